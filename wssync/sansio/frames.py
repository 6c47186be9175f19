"""WebSocket frames: opcodes, close codes, masking and serialization (RFC 6455 §5).

This module holds the values exchanged on the wire and the pure functions that
turn them into bytes. Parsing is incremental and lives in
:mod:`wssync.sansio.protocol`, next to the state it depends on (the side,
the message in progress, ``max_size``).

Frame layout (RFC 6455 §5.2)::

     0               1               2               3
     0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
    |     Extended payload length continued, if payload len == 127  |
    + - - - - - - - - - - - - - - - +-------------------------------+
    |                               |Masking-key, if MASK set to 1  |
    +-------------------------------+-------------------------------+
    | Masking-key (continued)       |          Payload Data         |
    +-------------------------------- - - - - - - - - - - - - - - - +
"""

from __future__ import annotations

import enum
import os
import struct
from dataclasses import dataclass
from typing import NamedTuple, Union

from wssync.exceptions import ProtocolError

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "Close",
    "CloseCode",
    "Frame",
    "Opcode",
    "apply_mask",
    "mask_in_place",
    "masking_key",
    "serialize_frame",
    "serialize_payload",
]

# bytes, bytearray and memoryview: what apply_mask() accepts.
BytesLike = Union[bytes, bytearray, memoryview]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 §7.4.1 and the IANA registry, §11.7)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    # 1004 is reserved.
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


class Frame(NamedTuple):
    """One WebSocket frame, with its payload unmasked.

    A NamedTuple rather than a dataclass because one is built for every frame
    sent and received: creating and reading a tuple is the cheapest option.
    Use ``frame._replace(data=...)`` to derive a frame.

    Attributes:
        opcode: The frame's opcode.
        data: The payload (unmasked; for text frames, UTF-8 bytes).
        fin: Whether this is the last frame of its message.
        rsv1: The RSV1 bit, used by extensions (permessage-deflate).
        rsv2: The RSV2 bit.
        rsv3: The RSV3 bit.
    """

    opcode: Opcode
    data: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False


def _is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may appear in a close frame.

    RFC 6455 §7.4.1/§7.4.2: 1000-1003 and 1007-1011 are defined; 1004 is
    reserved; 1005, 1006 and 1015 MUST NOT be set in a close frame; other
    codes below 3000 are reserved for future RFCs, of which the IANA registry
    (§11.7) has assigned 1012-1014; 3000-4999 are for libraries, frameworks
    and applications.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


@dataclass(frozen=True)
class Close:
    """The payload of a close frame: a status code and a reason.

    A close frame without a payload is represented as code 1005
    (:attr:`CloseCode.NO_STATUS_RCVD`) with an empty reason (RFC 6455 §7.1.5).

    Attributes:
        code: The close status code.
        reason: The close reason (at most 123 bytes once UTF-8 encoded).
    """

    code: int
    reason: str

    def __str__(self) -> str:
        return f"{self.code} {self.reason}".rstrip()

    @classmethod
    def parse(cls, data: bytes) -> Close:
        """Parse the payload of a close frame.

        Args:
            data: The (unmasked) payload of the close frame.

        Returns:
            The close code and reason; code 1005 for an empty payload.

        Raises:
            ProtocolError: If the payload is one byte long or the code is not
                allowed in a close frame.
            UnicodeDecodeError: If the reason isn't valid UTF-8.
        """
        if not data:
            # RFC 6455 §7.1.5: no status code → "1005 (no status received)".
            return cls(int(CloseCode.NO_STATUS_RCVD), "")
        if len(data) == 1:
            # RFC 6455 §5.5.1: if there is a body, its first two bytes MUST
            # be a status code.
            raise ProtocolError("close frame with a 1-byte payload")
        code = int.from_bytes(data[:2], "big")
        if not _is_valid_close_code(code):
            raise ProtocolError(f"invalid close code {code}")
        # RFC 6455 §5.5.1: the reason is UTF-8 encoded; a decoding error
        # propagates and becomes close code 1007 in the protocol.
        reason = data[2:].decode("utf-8")
        return cls(code, reason)

    def serialize(self) -> bytes:
        """Build the payload of a close frame.

        Returns:
            The code and UTF-8 reason; ``b""`` for code 1005 with no reason.

        Raises:
            ProtocolError: If the code may not be sent in a close frame, or
                the payload would exceed 125 bytes (RFC 6455 §5.5).
        """
        if self.code == CloseCode.NO_STATUS_RCVD and not self.reason:
            return b""
        if not _is_valid_close_code(self.code):
            raise ProtocolError(f"close code {self.code} can't be sent in a frame")
        data = self.code.to_bytes(2, "big") + self.reason.encode("utf-8")
        if len(data) > 125:
            # RFC 6455 §5.5: control frame payloads are at most 125 bytes.
            raise ProtocolError("close reason is longer than 123 bytes")
        return data


# Below this size, joining the header and the payload into one chunk is
# cheaper than a second send() / an iovec entry; above, the copy costs more.
_JOIN_LIMIT = 4096

# Up to this size, masking on Python ints beats the four translate() passes
# of mask_in_place(), whose fixed cost is a dozen calls (measured on CPython
# 3.11, ints against lanes: 1.10 against 1.17 µs at 384 bytes, 1.37 against
# 1.26 at 512, 2.4 against 1.7 at 1 KiB).
_INT_MASK_LIMIT = 384

_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack

# _xor_tables[k]: the translate() table that XORs every byte with k; made on
# first use (256 bytes each).
_xor_tables: list[bytes | None] = [None] * 256
_IDENTITY = bytes(range(256))


def _xor_table(k: int) -> bytes:
    table = _xor_tables[k]
    if table is None:
        table = _xor_tables[k] = bytes(b ^ k for b in _IDENTITY)
    return table


#: Masking keys not handed out yet, for the whole process (see masking_key).
_keys: list[bytes] = []


def masking_key() -> bytes:
    """Return a fresh masking key: 4 random bytes (RFC 6455 §5.3).

    Keys are cut from :func:`os.urandom` 256 bytes at a time, into a pool
    that every connection of the process draws from: a ``getrandom()``
    system call per key costs as much as the rest of sending a small frame,
    and one per connection showed in short connections (C3). Each key is
    handed out once (``list.pop()`` is atomic), and a forked child starts
    with an empty pool, so it never reuses its parent's keys.
    """
    try:
        return _keys.pop()
    except IndexError:
        block = os.urandom(256)
        _keys.extend([block[i : i + 4] for i in range(4, 256, 4)])
        return block[:4]


if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_keys.clear)


def apply_mask(data: BytesLike, mask: bytes) -> bytes:
    """Mask or unmask a payload (RFC 6455 §5.3).

    Args:
        data: The payload.
        mask: The 4-byte masking key.

    Returns:
        The payload XOR-ed with the key.
    """
    size = len(data)
    if size <= _INT_MASK_LIMIT:
        # XOR on Python ints: the work happens in C in one go.
        full, rest = divmod(size, 4)
        key = mask * full + mask[:rest]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(
            size, "big"
        )
    buffer = bytearray(data)
    mask_in_place(buffer, mask)
    return bytes(buffer)


def mask_in_place(
    buffer: bytearray, mask: bytes, start: int = 0, offset: int = 0
) -> None:
    """Mask or unmask ``buffer[start:]`` in place (RFC 6455 §5.3).

    Byte ``j`` of a payload is XOR-ed with ``mask[j % 4]``: the bytes of
    each of the four phases of the key are one extended slice, XOR-ed with
    a constant by :meth:`bytes.translate`, all in C. That is 1.5 to 2 times
    as fast as XOR on :meth:`int.from_bytes` ints for big payloads, and
    needs no temporary as big as the payload.

    Args:
        buffer: Holds the bytes to mask from ``start`` on.
        mask: The 4-byte masking key.
        start: Where the bytes to mask start in ``buffer``.
        offset: The position in the payload of ``buffer[start]`` (non-zero
            when a payload is masked part by part as it arrives).
    """
    phase = offset & 3
    if phase:
        mask = mask[phase:] + mask[:phase]
    tables = _xor_tables
    k0, k1, k2, k3 = mask
    t0 = tables[k0] or _xor_table(k0)
    t1 = tables[k1] or _xor_table(k1)
    t2 = tables[k2] or _xor_table(k2)
    t3 = tables[k3] or _xor_table(k3)
    # Written out: this runs for every message over a few hundred bytes.
    # (A slice starting past the end is empty: short buffers need no care.)
    buffer[start::4] = buffer[start::4].translate(t0)
    buffer[start + 1 :: 4] = buffer[start + 1 :: 4].translate(t1)
    buffer[start + 2 :: 4] = buffer[start + 2 :: 4].translate(t2)
    buffer[start + 3 :: 4] = buffer[start + 3 :: 4].translate(t3)


def serialize_frame(
    frame: Frame, *, mask: bool, key: bytes | None = None
) -> list[bytes | bytearray]:
    """Serialize a frame into chunks of bytes ready to be sent.

    Args:
        frame: The frame to serialize. Its payload is not checked against the
            control frame rules; :class:`~wssync.sansio.protocol.Protocol`
            does that.
        mask: Whether to mask the payload: clients MUST mask every frame
            and servers MUST NOT (RFC 6455 §5.1). Keys come from
            :func:`masking_key`, that is from :func:`os.urandom` (§5.3:
            "derived from a strong source of entropy").
        key: The 4-byte masking key to use when ``mask`` is true, instead of
            a fresh one from :func:`masking_key`; it must come from a strong
            source of entropy too.

    Returns:
        One chunk when the payload is masked or small (a :class:`bytearray`
        when a big payload was masked into it); ``[header, payload]`` when it
        is large and unmasked, so the caller can hand both to
        ``socket.sendmsg()`` without copying the payload.
    """
    first = (
        (0x80 if frame.fin else 0)
        | (0x40 if frame.rsv1 else 0)
        | (0x20 if frame.rsv2 else 0)
        | (0x10 if frame.rsv3 else 0)
        | frame.opcode
    )
    if mask and key is None:
        key = masking_key()
    return serialize_payload(first, frame.data, key if mask else None)


def serialize_payload(
    first: int, data: bytes, key: bytes | None
) -> list[bytes | bytearray]:
    """Serialize a frame from its first byte and its payload.

    :func:`serialize_frame` without building a :class:`Frame`: the fast path
    of sending a message.

    Args:
        first: The first byte of the header: FIN, the RSV bits and the opcode.
        data: The payload.
        key: The 4-byte masking key, or ``None`` not to mask.

    Returns:
        As :func:`serialize_frame`.
    """
    size = len(data)
    mask_bit = 0x80 if key is not None else 0
    # RFC 6455 §5.2: the minimal number of bytes MUST be used for the length.
    if size < 126:
        header = bytes((first, mask_bit | size))
    elif size < 65536:
        header = _pack_short(first, mask_bit | 126, size)
    else:
        header = _pack_long(first, mask_bit | 127, size)
    if key is not None:
        if size <= _INT_MASK_LIMIT:
            return [header + key + apply_mask(data, key)]
        # Mask in the buffer that goes out: one copy of the payload.
        buffer = bytearray(header)
        buffer += key
        start = len(buffer)
        buffer += data
        mask_in_place(buffer, key, start)
        return [buffer]
    if size < _JOIN_LIMIT:
        return [header + data]
    return [header, data]
