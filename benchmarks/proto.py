"""Just enough RFC 6455 / RFC 7692 for the lean benchmark peers.

No WebSocket library is involved: the load generator and the reference echo
server build their bytes here, ahead of time where possible.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import socket
import struct
import zlib

# Opcodes.
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The one ``Sec-WebSocket-Key`` the load generator sends (any 16 bytes,
#: base64-encoded, will do; a fixed one lets the request be precomputed).
KEY = base64.b64encode(b"wssync-benchmark").decode()

#: The permessage-deflate offer of S1z / S3z, the same for every server: no
#: context takeover in either direction (so every message is compressed on its
#: own and the load generator can precompute its compressed frames) and a
#: 4 KiB window (12 bits) both ways, the default window of wssync and
#: websockets.
DEFLATE_OFFER = (
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
    " server_max_window_bits=12; client_max_window_bits=12"
)
#: zlib settings of the load generator's compressor: zlib's default level and
#: memLevel 5, what wssync and websockets use.
DEFLATE_LEVEL = 6
DEFLATE_MEM_LEVEL = 5
_SYNC_TAIL = b"\x00\x00\xff\xff"

#: The close frame a server answers a 1000 close with (no reason).
CLOSE_1000 = struct.pack("!H", 1000)


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


ACCEPT = accept_value(KEY)


def handshake_request(
    host: str, port: int, path: str = "/", extensions: str | None = None
) -> bytes:
    """The opening handshake request, as bytes."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and headers (lower-case names, last value wins)."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


def handshake_response(request_head: bytes) -> bytes:
    """The 101 response to a request head (no extension, no subprotocol).

    What the raw-TCP server and the reference echo server answer: the least
    a server must do.
    """
    key = ""
    for line in request_head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip().decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_value(key)}\r\n\r\n"
    ).encode()


def parse_extensions(value: str | None) -> dict[str, str | None]:
    """Parameters of the accepted permessage-deflate, or ``{}`` if none."""
    if not value:
        return {}
    name, *params = (part.strip() for part in value.split(";"))
    if name != "permessage-deflate":
        raise ValueError(f"unexpected extension: {value!r}")
    result: dict[str, str | None] = {"permessage-deflate": None}
    for param in params:
        key, eq, val = param.partition("=")
        result[key.strip()] = val.strip().strip('"') if eq else None
    return result


# ------------------------------------------------------------------ frames


#: Masking works block by block: int.from_bytes() over a whole megabyte is
#: slower than over blocks that fit in the CPU caches.
_MASK_BLOCK = 4096


def mask(data: bytes | memoryview, key: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``key`` (RFC 6455 §5.3).

    XOR of big integers built with :meth:`int.from_bytes`: the work is done
    in C, in pure Python.
    """
    n = len(data)
    if n <= _MASK_BLOCK:
        stream = key * (n // 4 + 1)
        return (
            int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")
        ).to_bytes(n, "little")
    view = memoryview(data)
    block_key = int.from_bytes(key * (_MASK_BLOCK // 4), "little")
    from_bytes = int.from_bytes
    last = n - n % _MASK_BLOCK
    chunks = [
        (from_bytes(view[i : i + _MASK_BLOCK], "little") ^ block_key).to_bytes(
            _MASK_BLOCK, "little"
        )
        for i in range(0, last, _MASK_BLOCK)
    ]
    if last < n:
        chunks.append(mask(view[last:], key))
    return b"".join(chunks)


def header(
    opcode: int, length: int, *, masked: bool, fin: bool = True, rsv1: bool = False
) -> bytes:
    """A frame header, with the shortest length encoding (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", first, bit | length)
    if length < 65536:
        return struct.pack("!BBH", first, bit | 126, length)
    return struct.pack("!BBQ", first, bit | 127, length)


def client_frame(
    opcode: int, payload: bytes, key: bytes | None = None, *, rsv1: bool = False
) -> bytes:
    """A whole masked frame, as a client sends it."""
    if key is None:
        key = os.urandom(4)
    head = header(opcode, len(payload), masked=True, rsv1=rsv1)
    return head + key + mask(payload, key)


def server_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """A whole unmasked frame, as a server sends it."""
    return header(opcode, len(payload), masked=False, rsv1=rsv1) + payload


class FrameError(Exception):
    """The peer sent something the benchmark didn't expect."""


def parse_frame(buf: bytes | bytearray | memoryview, start: int = 0):
    """Parse one frame at ``buf[start:]``.

    Returns:
        ``None`` if the frame is incomplete, else ``(fin, rsv1, opcode,
        payload, end)`` with the payload unmasked and ``end`` the offset after
        the frame.
    """
    available = len(buf) - start
    if available < 2:
        return None
    b0, b1 = buf[start], buf[start + 1]
    length = b1 & 0x7F
    pos = start + 2
    if length == 126:
        if available < 4:
            return None
        (length,) = struct.unpack_from("!H", buf, pos)
        pos += 2
    elif length == 127:
        if available < 10:
            return None
        (length,) = struct.unpack_from("!Q", buf, pos)
        pos += 8
    key = None
    if b1 & 0x80:
        if len(buf) < pos + 4:
            return None
        key = bytes(buf[pos : pos + 4])
        pos += 4
    end = pos + length
    if len(buf) < end:
        return None
    payload = bytes(buf[pos:end])
    if key is not None:
        payload = mask(payload, key)
    return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload, end


# ----------------------------------------------------------------- deflate


def deflate(data: bytes, wbits: int = 12) -> bytes:
    """Compress one message on its own (no context takeover, RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(
        DEFLATE_LEVEL, zlib.DEFLATED, -wbits, DEFLATE_MEM_LEVEL
    )
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(_SYNC_TAIL)
    return out[:-4]


def inflate(payload: bytes, wbits: int = 15) -> bytes:
    """Decompress one message with a fresh context (RFC 7692 §7.2.2)."""
    decompressor = zlib.decompressobj(-wbits)
    data = decompressor.decompress(payload + _SYNC_TAIL)
    if decompressor.unconsumed_tail:  # pragma: no cover - can't happen: no limit
        raise FrameError("incomplete decompression")
    return data


# ---------------------------------------------------------------- payloads


def text_payloads(count: int, size: int, seed: int = 1) -> list[bytes]:
    """``count`` distinct ASCII payloads of ``size`` bytes (UTF-8 text)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
    return [
        "".join(rng.choice(letters) for _ in range(size)).encode() for _ in range(count)
    ]


def binary_payloads(count: int, size: int, seed: int = 2) -> list[bytes]:
    """``count`` distinct random (incompressible) payloads of ``size`` bytes."""
    rng = random.Random(seed)
    return [rng.getrandbits(size * 8).to_bytes(size, "little") for _ in range(count)]


_WORDS = [
    *("id", "name", "value", "status", "ok", "error", "user", "time", "event"),
    *("price", "count", "items", "data", "type", "true", "false", "null"),
    *("message", "server", "client", "request", "response", "header"),
]


def compressible_payloads(count: int, size: int, seed: int = 3) -> list[bytes]:
    """``count`` distinct JSON-like payloads of ``size`` bytes.

    Records of words from a small vocabulary and random numbers: zlib at level
    6 with a 4 KiB window makes them about 3 to 4 times smaller, like typical
    JSON traffic.
    """
    rng = random.Random(seed)
    payloads = []
    for _ in range(count):
        parts = []
        total = 0
        while total < size:
            record = (
                f'{{"{rng.choice(_WORDS)}": "{rng.choice(_WORDS)}", '
                f'"{rng.choice(_WORDS)}": {rng.randrange(10**6)}, '
                f'"{rng.choice(_WORDS)}": [{rng.randrange(1000)}, '
                f'"{rng.choice(_WORDS)}"]}},\n'
            )
            parts.append(record)
            total += len(record)
        payloads.append("".join(parts).encode()[:size])
    return payloads


# ------------------------------------------------------------------ helpers


def connect_tcp(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A connected TCP socket with ``TCP_NODELAY`` (frames are written whole)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read an HTTP head; return it and the bytes read after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise FrameError(f"connection closed during the handshake: {data!r}")
        data += chunk
        if len(data) > 65536:
            raise FrameError("handshake head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest
