"""Scripted raw-socket WebSocket peers, for tests of misbehaving peers.

A misbehaving peer can't be written with a WebSocket library, which would
refuse to misbehave: these helpers build handshakes and frames by hand
(independently of :mod:`wssync`, so that a bug there can't hide in both the
peer and the code under test) and read the other side's answers with
deadlines, so that a test fails instead of hanging.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any, Callable, NamedTuple

import wssync

__all__ = [
    "GUID",
    "RawFrame",
    "RawPeer",
    "accept_key",
    "build_frame",
    "build_request",
    "build_response",
    "running_server",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

# Opcodes, spelled out rather than imported from the code under test.
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def build_request(
    host: str,
    path: str = "/",
    *,
    key: str | None = None,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    omit: tuple[str, ...] = (),
) -> tuple[bytes, str]:
    """An opening handshake request and its key.

    Args:
        host: The Host header.
        path: The request target.
        key: The Sec-WebSocket-Key; random by default.
        method: The method.
        headers: More header fields (added after the standard ones).
        omit: Standard header names to leave out.
    """
    if key is None:
        key = base64.b64encode(os.urandom(16)).decode()
    fields = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    fields = [(name, value) for name, value in fields if name not in omit]
    fields += headers or []
    lines = [f"{method} {path} HTTP/1.1"] + [f"{n}: {v}" for n, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


def build_response(key: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    """A 101 response accepting a handshake with ``key``."""
    fields = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ] + (headers or [])
    lines = ["HTTP/1.1 101 Switching Protocols"] + [f"{n}: {v}" for n, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    mask: bool,
    fin: bool = True,
    rsv: int = 0,
    length: int | None = None,
    length_bytes: int | None = None,
) -> bytes:
    """Serialize a frame by hand (RFC 6455 §5.2), however invalid.

    Args:
        opcode: Any 4-bit value, reserved ones included.
        payload: The payload, before masking.
        mask: Whether to mask it (clients must, servers must not).
        fin: The FIN bit.
        rsv: The three RSV bits, as a 3-bit number (4 is RSV1).
        length: The length to announce, if not the payload's.
        length_bytes: 0, 2 or 8 extended length bytes, if not the minimum.
    """
    announced = len(payload) if length is None else length
    if length_bytes is None:
        length_bytes = 0 if announced < 126 else 2 if announced < 65536 else 8
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)])
    mask_bit = 0x80 if mask else 0
    if length_bytes == 0:
        head.append(mask_bit | announced)
    elif length_bytes == 2:
        head.append(mask_bit | 126)
        head += struct.pack("!H", announced)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", announced)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + apply_mask(payload, key)


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (RFC 6455 §5.3)."""
    size = len(data)
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        size, "big"
    )


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """The payload of a close frame."""
    return struct.pack("!H", code) + reason


class RawFrame(NamedTuple):
    """A frame as read from the wire, unmasked."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masked: bool

    @property
    def close_code(self) -> int | None:
        """The code of a close frame (None if it has no payload)."""
        assert self.opcode == CLOSE, self
        if len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])


class PeerClosed(Exception):
    """The other side closed the TCP connection."""


class RawPeer:
    """One end of a connection, scripted byte by byte by a test.

    Every read has a deadline: a test that waits for something that never
    comes fails with :exc:`TimeoutError`.
    """

    def __init__(self, sock: socket.socket, *, client: bool) -> None:
        self.sock = sock
        self.client = client  # whether to mask frames
        self.buffer = bytearray()
        sock.settimeout(None)

    # ------------------------------------------------------------- opening

    @classmethod
    def connect(
        cls,
        port: int,
        path: str = "/",
        *,
        headers: list[tuple[str, str]] | None = None,
        timeout: float = 5,
    ) -> RawPeer:
        """Connect to a server on localhost and complete the handshake."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        peer = cls(sock, client=True)
        try:
            request, key = build_request(f"127.0.0.1:{port}", path, headers=headers)
            sock.sendall(request)
            status, fields, _ = peer.read_response(timeout)
            assert status == 101, (status, fields)
            assert fields["sec-websocket-accept"] == accept_key(key)
            peer.extensions = fields.get("sec-websocket-extensions", "")
        except BaseException:
            sock.close()
            raise
        return peer

    extensions = ""

    def read_until(self, marker: bytes, timeout: float) -> bytes:
        """Read up to and including ``marker``; return it and keep the rest."""
        deadline = time.monotonic() + timeout
        while True:
            index = self.buffer.find(marker)
            if index != -1:
                end = index + len(marker)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            self._fill(deadline)

    def read_exactly(self, size: int, timeout: float) -> bytes:
        """Read ``size`` bytes."""
        deadline = time.monotonic() + timeout
        while len(self.buffer) < size:
            self._fill(deadline)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the peer under test said nothing in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("the peer under test said nothing in time") from None
        if not data:
            raise PeerClosed(bytes(self.buffer))
        self.buffer += data

    def read_response(self, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
        """Read an HTTP response: status, fields (lower-case names), body."""
        head = self.read_until(b"\r\n\r\n", timeout).decode("latin-1")
        status_line, *lines = head[:-4].split("\r\n")
        fields: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        length = int(fields.get("content-length", "0"))
        body = self.read_exactly(length, timeout) if length else b""
        return int(status_line.split(" ")[1]), fields, body

    def read_request(self, timeout: float = 5) -> tuple[str, dict[str, str]]:
        """Read an HTTP request head: request line, fields (lower-case names)."""
        head = self.read_until(b"\r\n\r\n", timeout).decode("latin-1")
        request_line, *lines = head[:-4].split("\r\n")
        fields = {}
        for line in lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return request_line, fields

    # -------------------------------------------------------------- frames

    def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: Any) -> None:
        """Send one frame, masked if this peer is a client."""
        kwargs.setdefault("mask", self.client)
        self.sock.sendall(build_frame(opcode, payload, **kwargs))

    def send_close(self, code: int = 1000, reason: bytes = b"") -> None:
        """Send a close frame."""
        self.send_frame(CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout: float = 5) -> RawFrame:
        """Read one frame."""
        deadline = time.monotonic() + timeout
        head = self.read_exactly(2, timeout)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._exactly(2, deadline))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._exactly(8, deadline))[0]
        masked = bool(head[1] & 0x80)
        key = self._exactly(4, deadline) if masked else b""
        payload = self._exactly(length, deadline)
        if masked:
            payload = apply_mask(payload, key)
        return RawFrame(
            head[0] >> 7 == 1, head[0] >> 4 & 7, head[0] & 0x0F, payload, masked
        )

    def _exactly(self, size: int, deadline: float) -> bytes:
        return self.read_exactly(size, max(0.0, deadline - time.monotonic()))

    def recv_until_close(self, timeout: float = 5) -> tuple[list[RawFrame], RawFrame]:
        """Read frames up to a close frame; return the others and the close."""
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            frame = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if frame.opcode == CLOSE:
                return frames, frame
            frames.append(frame)

    def expect_eof(self, timeout: float = 5) -> bytes:
        """Wait for the other side to close the TCP connection.

        Returns:
            Bytes received before the end of the stream (unread ones included).
        """
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except PeerClosed:
            data = bytes(self.buffer)
            self.buffer.clear()
            return data
        except ConnectionResetError:
            # An abortive close (RST) also ends the connection.
            data = bytes(self.buffer)
            self.buffer.clear()
            return data

    def close(self) -> None:
        """Close the socket."""
        with contextlib.suppress(OSError):
            self.sock.close()

    def abort(self) -> None:
        """Reset the TCP connection (RST), as a crashed peer's kernel would."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        self.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RawServer:
    """A listening socket on localhost whose connections the test scripts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.uri = f"ws://127.0.0.1:{self.port}/"
        self.peers: list[RawPeer] = []

    def accept(self, timeout: float = 5) -> RawPeer:
        """Accept one connection."""
        self.sock.settimeout(timeout)
        conn, _ = self.sock.accept()
        peer = RawPeer(conn, client=False)
        self.peers.append(peer)
        return peer

    def accept_handshake(
        self, timeout: float = 5, headers: list[tuple[str, str]] | None = None
    ) -> tuple[RawPeer, dict[str, str]]:
        """Accept a connection and complete its opening handshake."""
        peer = self.accept(timeout)
        _, fields = peer.read_request(timeout)
        peer.sock.sendall(build_response(fields["sec-websocket-key"], headers))
        return peer, fields

    def close(self) -> None:
        """Close the listening socket and every accepted connection."""
        for peer in self.peers:
            peer.close()
        self.sock.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def running_server(
    handler: Callable[..., Any], **options: Any
) -> Iterator[wssync.ThreadingServer]:
    """A wssync server on a free localhost port, serving in the background.

    Shut down on exit, whatever happened, so that no thread outlives the test.
    """
    server = wssync.serve(handler, "127.0.0.1", 0, **options)
    try:
        server.start()
        yield server
    finally:
        server.shutdown()
