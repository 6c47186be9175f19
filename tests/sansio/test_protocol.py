"""Tests for wssync.sansio.protocol: the WebSocket state machine, with raw bytes.

Incoming frames are built here by hand (``build``) and outgoing bytes decoded
by hand (``Output``), independently of wssync.sansio.frames, so that the
protocol is checked against RFC 6455 rather than against itself. Most tests
run for both sides and with three ways of feeding the bytes: all at once, one
byte at a time, and in chunks of 3 bytes.
"""

from __future__ import annotations

import logging
import os
import random
import tracemalloc
from typing import Callable, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wssync.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
)
from wssync.sansio import protocol as protocol_module
from wssync.sansio.extensions.base import Extension
from wssync.sansio.frames import Close, Frame, Opcode
from wssync.sansio.protocol import OK_CLOSE_CODES, Protocol, Side, State

KEY = b"\x12\x34\xab\xcd"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# --- helpers -----------------------------------------------------------------


def build(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """Encode a frame as RFC 6455 §5.2 says, masked with ``key`` if given."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload) if length is None else length
    mask_bit = 0x80 if key is not None else 0
    if size < 126:
        header = bytes([first, mask_bit | size])
    elif size < 65536:
        header = bytes([first, mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + size.to_bytes(8, "big")
    if key is None:
        return header + payload
    # Mask with ints rather than byte by byte: some payloads are megabytes.
    full = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(full, "big")).to_bytes(
        len(payload), "big"
    )
    return header + key + masked


def peer(side: Side) -> Callable[..., bytes]:
    """Build frames as the peer of ``side`` sends them: masked by a client."""

    def build_from_peer(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
        if side is Side.SERVER:
            kwargs.setdefault("key", KEY)
        return build(opcode, payload, **kwargs)  # type: ignore[arg-type]

    return build_from_peer


class Out(NamedTuple):
    opcode: int
    data: bytes
    fin: bool
    rsv: int


class Output(NamedTuple):
    frames: list[Out]
    eof: bool


def output(protocol: Protocol) -> Output:
    """Decode what ``protocol`` wants to send, checking the masking rules."""
    chunks = protocol.data_to_send()
    eof = False
    if chunks and chunks[-1] == b"":
        eof = True
        chunks = chunks[:-1]
    assert b"" not in chunks, "EOF must be the last chunk"
    data = b"".join(chunks)
    masked = protocol.side is Side.CLIENT
    frames = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        # RFC 6455 §5.1: clients mask every frame, servers never do.
        assert bool(second & 0x80) == masked
        size = second & 0x7F
        pos += 2
        if size == 126:
            size = int.from_bytes(data[pos : pos + 2], "big")
            assert size >= 126
            pos += 2
        elif size == 127:
            size = int.from_bytes(data[pos : pos + 8], "big")
            assert size >= 65536
            pos += 8
        if masked:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + size]
        assert len(payload) == size
        pos += size
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frames.append(Out(first & 0x0F, payload, bool(first & 0x80), (first >> 4) & 7))
    return Output(frames, eof)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def events(protocol: Protocol) -> list[tuple[int, bytes, bool]]:
    return [(f.opcode, f.data, f.fin) for f in protocol.events_received()]


Feed = Callable[[Protocol, bytes], None]


def feed_all(protocol: Protocol, data: bytes) -> None:
    protocol.receive_data(data)


def feed_bytewise(protocol: Protocol, data: bytes) -> None:
    for i in range(len(data)):
        protocol.receive_data(data[i : i + 1])


def feed_chunks3(protocol: Protocol, data: bytes) -> None:
    for i in range(0, len(data), 3):
        # Also exercise the bytearray / memoryview inputs.
        chunk = data[i : i + 3]
        protocol.receive_data(bytearray(chunk) if i % 2 else memoryview(chunk))


@pytest.fixture(params=[Side.SERVER, Side.CLIENT], ids=["server", "client"])
def side(request: pytest.FixtureRequest) -> Side:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(
    params=[feed_all, feed_bytewise, feed_chunks3], ids=["all", "bytewise", "chunks3"]
)
def feed(request: pytest.FixtureRequest) -> Feed:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make(side: Side) -> Callable[..., bytes]:
    return peer(side)


def assert_failed(
    protocol: Protocol, code: int, exc_type: type[BaseException] | None = None
) -> None:
    """Check the connection was failed with ``code`` as RFC 6455 §7.1.7 says."""
    out = output(protocol)
    assert len(out.frames) == 1
    assert out.frames == [
        Out(CLOSE, close_payload(code) + out.frames[0].data[2:], True, 0)
    ]
    assert protocol.state is State.CLOSING
    assert protocol.close_sent is not None
    assert protocol.close_sent.code == code
    assert protocol.close_rcvd is None
    assert protocol.close_expected()
    # RFC 6455 §7.1.1: the server closes the TCP connection first.
    assert out.eof is (protocol.side is Side.SERVER)
    if exc_type is not None:
        assert isinstance(protocol.failure, exc_type)
    # RFC 6455 §7.1.7: whatever comes next is not processed.
    protocol.events_received()
    protocol.receive_data(b"\x89\x00" + b"\x89\x80" + KEY)
    assert protocol.events_received() == []
    assert protocol.data_to_send() == []


# --- receiving data ----------------------------------------------------------


def test_initial_state(side: Side) -> None:
    protocol = Protocol(side)
    assert protocol.side is side
    assert protocol.state is State.OPEN
    assert protocol.close_code is None
    assert protocol.close_reason is None
    assert protocol.close_rcvd is None
    assert protocol.close_sent is None
    assert protocol.close_rcvd_then_sent is None
    assert not protocol.eof_sent
    assert protocol.failure is None
    assert protocol.pending_failure is None
    assert not protocol.close_expected()
    assert protocol.events_received() == []
    assert protocol.data_to_send() == []
    assert protocol.max_size == 2**20


def test_receive_text_and_binary(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    text = "café ☃ 😀".encode()
    feed(protocol, make(TEXT, text) + make(BINARY, b"\x00\xff\x80"))
    received = protocol.events_received()
    assert received == [
        Frame(Opcode.TEXT, text),
        Frame(Opcode.BINARY, b"\x00\xff\x80"),
    ]
    assert type(received[0].data) is bytes
    assert received[0].opcode is Opcode.TEXT
    assert output(protocol) == Output([], False)
    assert protocol.state is State.OPEN


def test_receive_empty_frames(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(
        protocol,
        make(TEXT, b"") + make(BINARY, b"") + make(TEXT, b"", fin=False) + make(CONT),
    )
    assert events(protocol) == [
        (Opcode.TEXT, b"", True),
        (Opcode.BINARY, b"", True),
        (Opcode.TEXT, b"", False),
        (Opcode.CONT, b"", True),
    ]


@pytest.mark.parametrize("size", [125, 126, 127, 65535, 65536, 70001])
def test_receive_length_encodings(
    side: Side, make: Callable[..., bytes], size: int
) -> None:
    protocol = Protocol(side)
    data = os.urandom(size)
    frame = make(BINARY, data)
    # One byte at a time for the header, then the payload in big chunks.
    for i in range(14):
        protocol.receive_data(frame[i : i + 1])
    for i in range(14, len(frame), 10000):
        protocol.receive_data(frame[i : i + 10000])
    assert protocol.events_received() == [Frame(Opcode.BINARY, data)]


def test_receive_fragmented_message_with_interleaved_ping(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(
        protocol,
        make(TEXT, b"caf", fin=False)
        + make(PING, b"ping!")
        + make(CONT, b"\xc3", fin=False)
        + make(PONG, b"pong!")
        + make(CONT, b"\xa9", fin=True)
        + make(BINARY, b"next"),
    )
    assert events(protocol) == [
        (Opcode.TEXT, b"caf", False),
        (Opcode.PING, b"ping!", True),
        (Opcode.CONT, b"\xc3", False),
        (Opcode.PONG, b"pong!", True),
        (Opcode.CONT, b"\xa9", True),
        (Opcode.BINARY, b"next", True),
    ]
    # RFC 6455 §5.5.2: the ping is answered with the same payload.
    assert output(protocol) == Output([Out(PONG, b"ping!", True, 0)], False)


def test_receive_ping_answers_pong(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(PING, b"") + make(PING, b"x" * 125))
    assert events(protocol) == [
        (Opcode.PING, b"", True),
        (Opcode.PING, b"x" * 125, True),
    ]
    assert output(protocol) == Output(
        [Out(PONG, b"", True, 0), Out(PONG, b"x" * 125, True, 0)], False
    )


def test_receive_pong_is_reported_and_not_answered(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(PONG, b"abc"))
    assert events(protocol) == [(Opcode.PONG, b"abc", True)]
    assert protocol.data_to_send() == []


def test_receive_many_frames_in_one_chunk(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    payloads = [os.urandom(random.randrange(0, 300)) for _ in range(500)]
    protocol.receive_data(b"".join(make(BINARY, payload) for payload in payloads))
    assert [frame.data for frame in protocol.events_received()] == payloads


def test_events_received_clears(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(TEXT, b"one"))
    assert len(protocol.events_received()) == 1
    assert protocol.events_received() == []


def test_incomplete_frame_is_not_reported(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    frame = make(BINARY, b"0123456789")
    protocol.receive_data(frame[:-1])
    assert protocol.events_received() == []
    protocol.receive_data(frame[-1:])
    assert events(protocol) == [(Opcode.BINARY, b"0123456789", True)]


@settings(max_examples=50, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    for side in Side:
        make = peer(side)
        stream = (
            make(TEXT, "héllo".encode(), fin=False)
            + make(PING, b"p")
            + make(CONT, "wörld".encode())
            + make(BINARY, bytes(range(256)) * 3)
            + make(TEXT, b"")
            + make(PONG, b"q")
        )
        protocol = Protocol(side)
        positions = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
        for start, end in zip(positions, positions[1:]):
            protocol.receive_data(stream[start:end])
        assert events(protocol) == [
            (Opcode.TEXT, "héllo".encode(), False),
            (Opcode.PING, b"p", True),
            (Opcode.CONT, "wörld".encode(), True),
            (Opcode.BINARY, bytes(range(256)) * 3, True),
            (Opcode.TEXT, b"", True),
            (Opcode.PONG, b"q", True),
        ]
        assert protocol.state is State.OPEN


@pytest.mark.timeout(30)
def test_large_message_in_small_chunks_is_linear(side: Side) -> None:
    # 16 MiB in 1 KiB chunks: with a copy of the partial frame on each call,
    # this would move ~128 GB; it must take well under the timeout.
    protocol = Protocol(side, max_size=None)
    data = os.urandom(16 * 2**20)
    frame = peer(side)(BINARY, data)
    view = memoryview(frame)
    for i in range(0, len(frame), 1024):
        protocol.receive_data(view[i : i + 1024])
    assert protocol.events_received() == [Frame(Opcode.BINARY, data)]


@pytest.mark.timeout(30)
def test_large_text_in_small_chunks_is_linear(side: Side) -> None:
    # The same for a text frame, which is validated while it arrives.
    protocol = Protocol(side, max_size=None)
    data = "€uro".encode() * (2**20)
    frame = peer(side)(TEXT, data)
    for i in range(0, len(frame), 1000):
        protocol.receive_data(frame[i : i + 1000])
    assert protocol.events_received() == [Frame(Opcode.TEXT, data)]


def test_trickled_frame_is_stored_compactly(side: Side) -> None:
    # A peer sending a frame two bytes per TCP segment must not make each
    # piece cost a Python object (30 bytes or more each).
    protocol = Protocol(side)
    frame = peer(side)(TEXT, b"x" * 30_000)
    tracemalloc.start()
    try:
        for i in range(0, len(frame) - 2, 2):
            protocol.receive_data(frame[i : i + 2])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300_000
    protocol.receive_data(frame[len(frame) - 2 - len(frame) % 2 :])
    assert protocol.events_received() == [Frame(Opcode.TEXT, b"x" * 30_000)]


def test_big_chunk_with_many_frames_and_a_partial_one(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side, max_size=None)
    big = os.urandom(3 * 2**20)
    stream = make(BINARY, b"a") + make(BINARY, big) + make(BINARY, b"b")
    protocol.receive_data(stream[:-2])
    assert [f.data for f in protocol.events_received()] == [b"a", big]
    protocol.receive_data(stream[-2:])
    assert [f.data for f in protocol.events_received()] == [b"b"]


# --- protocol errors → close codes -------------------------------------------


def test_server_rejects_unmasked_frame(feed: Feed) -> None:
    protocol = Protocol(Side.SERVER)
    feed(protocol, build(TEXT, b"hello"))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


def test_client_rejects_masked_frame(feed: Feed) -> None:
    protocol = Protocol(Side.CLIENT)
    feed(protocol, build(TEXT, b"hello", key=KEY))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_reserved_bits_without_extension(
    side: Side, feed: Feed, make: Callable[..., bytes], rsv: int
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(TEXT, b"hello", rsv=rsv))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes(
    side: Side, feed: Feed, make: Callable[..., bytes], opcode: int
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(opcode, b"x"))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_fragmented_control_frame(
    side: Side, feed: Feed, make: Callable[..., bytes], opcode: int
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(opcode, b"", fin=False))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_control_frame_too_long(
    side: Side, feed: Feed, make: Callable[..., bytes], opcode: int
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(opcode, b"\x03\xe8" + b"x" * 124))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


def test_control_frame_too_long_fails_on_the_first_two_bytes(side: Side) -> None:
    protocol = Protocol(side)
    protocol.receive_data(peer(side)(PING, b"x" * 126)[:2])
    assert_failed(protocol, 1002, ProtocolError)


@pytest.mark.parametrize("opcode", [CLOSE, PING, PONG])
def test_control_frame_with_reserved_bits(
    side: Side, feed: Feed, make: Callable[..., bytes], opcode: int
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(opcode, b"", rsv=4))
    assert_failed(protocol, 1002, ProtocolError)


def test_continuation_without_message(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(CONT, b"orphan"))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


def test_continuation_after_message_ended(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(TEXT, b"a", fin=False) + make(CONT, b"b"))
    assert len(protocol.events_received()) == 2
    protocol.receive_data(make(CONT, b"c", fin=False))
    assert_failed(protocol, 1002, ProtocolError)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_new_message_inside_fragmented_one(
    side: Side, make: Callable[..., bytes], opcode: int
) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(BINARY, b"a", fin=False))
    assert len(protocol.events_received()) == 1
    protocol.receive_data(make(opcode, b"b"))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


def test_length_with_top_bit_set(side: Side) -> None:
    protocol = Protocol(side, max_size=None)
    header = (
        bytes([0x82, (0x80 if side is Side.SERVER else 0) | 127]) + b"\x80" + b"\0" * 7
    )
    protocol.receive_data(header)
    assert_failed(protocol, 1002, ProtocolError)


def test_non_minimal_length_encoding_is_accepted(side: Side) -> None:
    # RFC 6455 §5.2's "minimal number of bytes" binds the sender.
    protocol = Protocol(side)
    mask_bit = 0x80 if side is Side.SERVER else 0
    key = KEY if side is Side.SERVER else b""
    payload = (
        b"hi" if side is Side.CLIENT else bytes(b ^ KEY[i] for i, b in enumerate(b"hi"))
    )
    protocol.receive_data(bytes([0x82, mask_bit | 126, 0, 2]) + key + payload)
    assert events(protocol) == [(Opcode.BINARY, b"hi", True)]


# --- max_size → 1009 ---------------------------------------------------------


def test_max_size_single_frame(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side, max_size=100)
    feed(protocol, make(BINARY, b"x" * 100))
    assert events(protocol) == [(Opcode.BINARY, b"x" * 100, True)]
    feed(protocol, make(BINARY, b"x" * 101))
    assert protocol.events_received() == []
    assert_failed(protocol, 1009, PayloadTooBig)


def test_max_size_is_checked_on_the_header(side: Side) -> None:
    # The header alone announces too much: fail before buffering the payload.
    protocol = Protocol(side, max_size=2**20)
    frame = peer(side)(BINARY, b"x" * (2**20 + 1))
    protocol.receive_data(frame[:10])
    assert_failed(protocol, 1009, PayloadTooBig)


def test_max_size_checked_with_16_bit_length_byte_by_byte(side: Side) -> None:
    protocol = Protocol(side, max_size=1000)
    frame = peer(side)(BINARY, b"x" * 1001)
    for i in range(4):
        protocol.receive_data(frame[i : i + 1])
    assert_failed(protocol, 1009, PayloadTooBig)


def test_max_size_counts_the_whole_message(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side, max_size=10)
    feed(protocol, make(TEXT, b"12345", fin=False) + make(CONT, b"123", fin=False))
    assert len(protocol.events_received()) == 2
    feed(protocol, make(CONT, b"123"))
    assert protocol.events_received() == []
    assert_failed(protocol, 1009, PayloadTooBig)


def test_max_size_resets_between_messages(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side, max_size=10)
    for _ in range(3):
        protocol.receive_data(make(TEXT, b"12345", fin=False) + make(CONT, b"12345"))
    assert len(protocol.events_received()) == 6
    assert protocol.state is State.OPEN


def test_max_size_exact_fragmented(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side, max_size=10)
    protocol.receive_data(make(BINARY, b"12345", fin=False) + make(CONT, b"12345"))
    assert len(protocol.events_received()) == 2
    assert protocol.state is State.OPEN


def test_max_size_does_not_apply_to_control_frames(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side, max_size=1)
    protocol.receive_data(make(PING, b"x" * 125))
    assert len(protocol.events_received()) == 1
    assert protocol.state is State.OPEN


def test_max_size_none_is_unlimited(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side, max_size=None)
    data = os.urandom(3 * 2**20)
    protocol.receive_data(make(BINARY, data))
    assert protocol.events_received() == [Frame(Opcode.BINARY, data)]


# --- UTF-8 → 1007 ------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    b"\x80",  # lone continuation byte
]


@pytest.mark.parametrize("data", INVALID_UTF8)
def test_invalid_utf8_in_text_frame(
    side: Side, feed: Feed, make: Callable[..., bytes], data: bytes
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(TEXT, data))
    assert protocol.events_received() == []
    assert_failed(protocol, 1007, UnicodeDecodeError)


@pytest.mark.parametrize("data", INVALID_UTF8)
def test_invalid_utf8_in_fragments_one_byte_each(
    side: Side, make: Callable[..., bytes], data: bytes
) -> None:
    # Autobahn 6.3.2: the message in fragments of 1 byte.
    protocol = Protocol(side)
    stream = make(TEXT, data[:1], fin=len(data) == 1) + b"".join(
        make(CONT, data[i : i + 1], fin=i == len(data) - 1) for i in range(1, len(data))
    )
    protocol.receive_data(stream)
    assert_failed(protocol, 1007, UnicodeDecodeError)


def test_invalid_utf8_fails_on_the_fragment_that_breaks_it(
    side: Side, make: Callable[..., bytes]
) -> None:
    # Autobahn 6.4.1/6.4.2: fail fast, before the message ends.
    protocol = Protocol(side)
    protocol.receive_data(
        make(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4", fin=False)
    )
    assert len(protocol.events_received()) == 1
    assert protocol.data_to_send() == []
    protocol.receive_data(make(CONT, b"\x90", fin=False))
    assert protocol.events_received() == []
    assert_failed(protocol, 1007, UnicodeDecodeError)


@pytest.mark.parametrize(
    ("valid", "invalid"),
    [
        (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xf4\x90\x80\x80edited"),
        (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4", b"\x90"),
        (b"abc\xed", b"\xa0"),  # surrogate: invalid from its second byte
        (b"abc", b"\xff"),
    ],
)
def test_invalid_utf8_fails_in_the_middle_of_a_frame(
    side: Side, make: Callable[..., bytes], valid: bytes, invalid: bytes
) -> None:
    # Autobahn 6.4.3/6.4.4: one frame sent in chops; fail on the bad chop.
    protocol = Protocol(side)
    frame = make(TEXT, valid + invalid + b"rest of the frame")
    header_length = 6 if side is Side.SERVER else 2
    first_chop = header_length + len(valid)
    protocol.receive_data(frame[:first_chop])
    assert protocol.data_to_send() == []
    assert protocol.state is State.OPEN
    protocol.receive_data(frame[first_chop : first_chop + len(invalid)])
    assert_failed(protocol, 1007, UnicodeDecodeError)


def test_text_ending_in_the_middle_of_a_code_point(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(TEXT, b"caf\xc3", fin=False) + make(CONT, b""))
    assert len(protocol.events_received()) == 1
    assert_failed(protocol, 1007, UnicodeDecodeError)


def test_single_text_frame_ending_in_the_middle_of_a_code_point(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(TEXT, "€".encode()[:2]))
    assert protocol.events_received() == []
    assert_failed(protocol, 1007, UnicodeDecodeError)


def test_code_points_split_across_fragments(
    side: Side, make: Callable[..., bytes]
) -> None:
    # Autobahn 6.2.3/6.2.4: valid UTF-8 in fragments of 1 byte.
    protocol = Protocol(side)
    text = "κόσμε 😀 €".encode()
    stream = make(TEXT, text[:1], fin=False) + b"".join(
        make(CONT, text[i : i + 1], fin=i == len(text) - 1) for i in range(1, len(text))
    )
    protocol.receive_data(stream)
    assert b"".join(f.data for f in protocol.events_received()) == text
    assert protocol.state is State.OPEN


def test_binary_is_not_validated(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(BINARY, b"\xff", fin=False) + make(CONT, b"\xed\xa0\x80"))
    assert len(protocol.events_received()) == 2
    assert protocol.state is State.OPEN


def test_utf8_state_resets_between_messages(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(
        protocol,
        make(TEXT, b"\xc3", fin=False)
        + make(CONT, b"\xa9")
        + make(TEXT, b"\xe2\x82", fin=False)
        + make(CONT, b"\xac")
        + make(TEXT, b"ok"),
    )
    assert len(protocol.events_received()) == 5
    assert protocol.state is State.OPEN


# --- receiving a close frame -------------------------------------------------


def test_peer_closes_first_server(feed: Feed) -> None:
    protocol = Protocol(Side.SERVER)
    feed(protocol, build(CLOSE, close_payload(1000, b"bye"), key=KEY))
    assert events(protocol) == [(Opcode.CLOSE, close_payload(1000, b"bye"), True)]
    assert protocol.close_rcvd == Close(1000, "bye")
    assert protocol.state is State.CLOSING
    # RFC 6455 §5.5.1: echo the status code; then the server closes TCP first.
    assert output(protocol) == Output([Out(CLOSE, close_payload(1000), True, 0)], True)
    assert protocol.close_sent == Close(1000, "")
    assert protocol.close_rcvd_then_sent is True
    assert protocol.eof_sent
    assert protocol.close_expected()
    assert protocol.close_code is None
    protocol.receive_eof()
    assert protocol.state is State.CLOSED
    assert protocol.data_to_send() == []
    assert protocol.close_code == 1000
    assert protocol.close_reason == "bye"
    assert not protocol.close_expected()
    exc = protocol.close_exc()
    assert isinstance(exc, ConnectionClosedOK)
    assert (exc.rcvd, exc.sent, exc.rcvd_then_sent) == (
        Close(1000, "bye"),
        Close(1000, ""),
        True,
    )


def test_peer_closes_first_client(feed: Feed) -> None:
    protocol = Protocol(Side.CLIENT)
    feed(protocol, build(CLOSE, close_payload(1001)))
    assert events(protocol) == [(Opcode.CLOSE, close_payload(1001), True)]
    # The client echoes and waits for the server to close TCP.
    assert output(protocol) == Output([Out(CLOSE, close_payload(1001), True, 0)], False)
    assert protocol.state is State.CLOSING
    assert protocol.close_expected()
    protocol.receive_eof()
    assert protocol.state is State.CLOSED
    assert protocol.data_to_send() == [b""]
    assert protocol.close_code == 1001
    assert isinstance(protocol.close_exc(), ConnectionClosedOK)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999])
def test_close_echoes_the_received_code(
    side: Side, make: Callable[..., bytes], code: int
) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(CLOSE, close_payload(code, b"why")))
    out = output(protocol)
    assert out.frames == [Out(CLOSE, close_payload(code), True, 0)]
    protocol.receive_eof()
    assert protocol.close_code == code
    assert protocol.close_reason == "why"
    exc = protocol.close_exc()
    expected = ConnectionClosedOK if code in (1000, 1001) else ConnectionClosedError
    assert type(exc) is expected


def test_empty_close_gets_an_empty_close(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(CLOSE))
    assert output(protocol).frames == [Out(CLOSE, b"", True, 0)]
    assert protocol.close_rcvd == Close(1005, "")
    assert protocol.close_sent == Close(1005, "")
    protocol.receive_eof()
    assert protocol.close_code == 1005
    assert protocol.close_reason == ""
    # A close without status code is not an error.
    assert isinstance(protocol.close_exc(), ConnectionClosedOK)


def test_close_with_one_byte_payload(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(CLOSE, b"\x03"))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_close_with_invalid_code(
    side: Side, make: Callable[..., bytes], code: int
) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(CLOSE, close_payload(code)))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


def test_close_with_invalid_utf8_reason(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    feed(protocol, make(CLOSE, close_payload(1000, b"\xce\xba\xed\xa0\x80")))
    assert protocol.events_received() == []
    assert_failed(protocol, 1007, UnicodeDecodeError)


def test_frames_after_close_are_ignored(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    # Autobahn 7.1.3/7.1.4: nothing after the peer's close frame counts.
    protocol = Protocol(side)
    feed(
        protocol,
        make(CLOSE, close_payload(1000))
        + make(PING, b"late")
        + make(TEXT, b"late")
        + make(0x5, b"garbage"),
    )
    assert events(protocol) == [(Opcode.CLOSE, close_payload(1000), True)]
    assert output(protocol).frames == [Out(CLOSE, close_payload(1000), True, 0)]
    protocol.receive_data(make(TEXT, b"even later"))
    assert protocol.events_received() == []
    assert protocol.data_to_send() == []
    assert protocol.failure is None


def test_close_in_the_middle_of_a_fragmented_message(
    side: Side, make: Callable[..., bytes]
) -> None:
    # Autobahn 7.1.5.
    protocol = Protocol(side)
    protocol.receive_data(
        make(TEXT, b"frag1", fin=False)
        + make(CLOSE, close_payload(1000))
        + make(CONT, b"frag2")
    )
    assert events(protocol) == [
        (Opcode.TEXT, b"frag1", False),
        (Opcode.CLOSE, close_payload(1000), True),
    ]
    assert output(protocol).frames == [Out(CLOSE, close_payload(1000), True, 0)]


# --- closing from this side --------------------------------------------------


def test_we_close_first_server(feed: Feed) -> None:
    protocol = Protocol(Side.SERVER)
    protocol.send_close(1000, "done")
    assert output(protocol) == Output(
        [Out(CLOSE, close_payload(1000, b"done"), True, 0)], False
    )
    assert protocol.state is State.CLOSING
    assert protocol.close_sent == Close(1000, "done")
    assert protocol.close_expected()
    # Data frames still in flight are reported.
    feed(protocol, build(TEXT, b"in flight", key=KEY) + build(PING, b"p", key=KEY))
    assert events(protocol) == [
        (Opcode.TEXT, b"in flight", True),
        (Opcode.PING, b"p", True),
    ]
    # No pong after our close frame.
    assert protocol.data_to_send() == []
    feed(protocol, build(CLOSE, close_payload(1000), key=KEY))
    assert events(protocol) == [(Opcode.CLOSE, close_payload(1000), True)]
    assert protocol.close_rcvd == Close(1000, "")
    assert protocol.close_rcvd_then_sent is False
    # Both close frames exchanged: the server closes TCP.
    assert output(protocol) == Output([], True)
    protocol.receive_eof()
    assert protocol.state is State.CLOSED
    assert protocol.data_to_send() == []
    assert protocol.close_code == 1000
    exc = protocol.close_exc()
    assert isinstance(exc, ConnectionClosedOK)
    assert exc.rcvd_then_sent is False


def test_we_close_first_client(feed: Feed) -> None:
    protocol = Protocol(Side.CLIENT)
    protocol.send_close(1001)
    assert output(protocol) == Output([Out(CLOSE, close_payload(1001), True, 0)], False)
    feed(protocol, build(CLOSE, close_payload(1001)))
    assert events(protocol) == [(Opcode.CLOSE, close_payload(1001), True)]
    # The client waits for the server to close TCP.
    assert protocol.data_to_send() == []
    assert protocol.state is State.CLOSING
    assert protocol.close_expected()
    protocol.receive_eof()
    assert protocol.state is State.CLOSED
    assert protocol.data_to_send() == [b""]
    assert protocol.close_code == 1001
    assert isinstance(protocol.close_exc(), ConnectionClosedOK)


def test_send_close_without_code(side: Side) -> None:
    protocol = Protocol(side)
    protocol.send_close()
    assert output(protocol).frames == [Out(CLOSE, b"", True, 0)]
    assert protocol.close_sent == Close(1005, "")


def test_send_close_errors(side: Side) -> None:
    protocol = Protocol(side)
    with pytest.raises(ProtocolError):
        protocol.send_close(reason="reason without a code")
    with pytest.raises(ProtocolError):
        protocol.send_close(1006)
    with pytest.raises(ProtocolError):
        protocol.send_close(1000, "x" * 124)
    # Nothing was sent, and the connection is still open.
    assert protocol.state is State.OPEN
    assert protocol.data_to_send() == []


def test_peer_answers_with_another_code(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side)
    protocol.send_close(1000)
    protocol.data_to_send()
    protocol.receive_data(make(CLOSE, close_payload(1011, b"oops")))
    protocol.receive_eof()
    assert protocol.close_code == 1011
    assert protocol.close_reason == "oops"
    exc = protocol.close_exc()
    assert type(exc) is ConnectionClosedError
    assert exc.code == 1011


def test_peer_never_answers_our_close(side: Side) -> None:
    protocol = Protocol(side)
    protocol.send_close(1000)
    protocol.data_to_send()
    protocol.receive_eof()
    assert protocol.state is State.CLOSED
    assert protocol.close_code == 1006
    assert protocol.close_reason == ""
    exc = protocol.close_exc()
    assert type(exc) is ConnectionClosedError
    assert exc.rcvd is None and exc.sent == Close(1000, "")


@pytest.mark.parametrize(
    "send",
    [
        lambda p: p.send_text(b"x"),
        lambda p: p.send_binary(b"x"),
        lambda p: p.send_continuation(b"x", fin=True),
        lambda p: p.send_ping(b""),
        lambda p: p.send_pong(b""),
        lambda p: p.send_close(1000),
    ],
    ids=["text", "binary", "continuation", "ping", "pong", "close"],
)
def test_sending_after_close_is_invalid(
    side: Side, send: Callable[[Protocol], None]
) -> None:
    protocol = Protocol(side)
    protocol.send_close(1000)
    with pytest.raises(InvalidState):
        send(protocol)
    protocol.receive_eof()
    with pytest.raises(InvalidState):
        send(protocol)


# --- end of stream -----------------------------------------------------------


def test_eof_while_open_is_abnormal(side: Side) -> None:
    protocol = Protocol(side)
    protocol.receive_eof()
    assert protocol.state is State.CLOSED
    assert protocol.close_code == 1006
    assert protocol.close_reason == ""
    assert protocol.data_to_send() == [b""]
    assert protocol.eof_sent
    exc = protocol.close_exc()
    assert type(exc) is ConnectionClosedError
    assert exc.rcvd is None and exc.sent is None
    assert exc.code == 1006


def test_eof_in_the_middle_of_a_frame(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(TEXT, b"complete") + make(TEXT, b"incomplete")[:-3])
    protocol.receive_eof()
    assert events(protocol) == [(Opcode.TEXT, b"complete", True)]
    assert protocol.state is State.CLOSED
    assert protocol.close_code == 1006


def test_eof_twice_and_data_after_eof(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side)
    protocol.receive_eof()
    protocol.data_to_send()
    protocol.receive_eof()
    protocol.receive_data(make(TEXT, b"ghost"))
    assert protocol.events_received() == []
    assert protocol.data_to_send() == []
    assert protocol.state is State.CLOSED


# --- fail() ------------------------------------------------------------------


@pytest.mark.parametrize("code", [1001, 1008, 1011, 4000])
def test_fail(side: Side, make: Callable[..., bytes], code: int) -> None:
    protocol = Protocol(side)
    protocol.fail(code, "because")
    out = output(protocol)
    assert out.frames == [Out(CLOSE, close_payload(code, b"because"), True, 0)]
    assert out.eof is (side is Side.SERVER)
    assert protocol.state is State.CLOSING
    assert protocol.close_sent == Close(code, "because")
    assert protocol.failure is None
    # RFC 6455 §7.1.7: no more processing of incoming data, not even a close.
    protocol.receive_data(make(TEXT, b"ignored") + make(CLOSE, close_payload(1000)))
    assert protocol.events_received() == []
    assert protocol.data_to_send() == []
    assert protocol.close_rcvd is None
    protocol.receive_eof()
    assert protocol.state is State.CLOSED
    assert protocol.close_code == 1006
    assert protocol.data_to_send() == ([] if side is Side.SERVER else [b""])
    assert type(protocol.close_exc()) is ConnectionClosedError


def test_fail_1006_sends_no_close_frame(side: Side) -> None:
    protocol = Protocol(side)
    protocol.fail(1006)
    # No closing handshake to wait for: both sides close TCP.
    assert protocol.data_to_send() == [b""]
    assert protocol.close_sent is None
    assert protocol.state is State.CLOSING
    protocol.receive_eof()
    assert protocol.state is State.CLOSED
    assert protocol.data_to_send() == []


def test_fail_truncates_long_reasons(side: Side) -> None:
    protocol = Protocol(side)
    protocol.fail(1011, "é" * 100)
    frame = output(protocol).frames[0]
    assert len(frame.data) <= 125
    assert frame.data[2:].decode() == "é" * 61


def test_fail_with_invalid_code(side: Side) -> None:
    protocol = Protocol(side)
    with pytest.raises(ProtocolError):
        protocol.fail(1015)
    assert protocol.state is State.OPEN
    assert protocol.data_to_send() == []


def test_fail_while_closing(side: Side) -> None:
    protocol = Protocol(side)
    protocol.send_close(1000)
    protocol.data_to_send()
    protocol.fail(1002)
    # No second close frame; the server closes TCP.
    assert protocol.data_to_send() == ([b""] if side is Side.SERVER else [])
    assert protocol.close_sent == Close(1000, "")


def test_fail_after_closed_does_nothing(side: Side) -> None:
    protocol = Protocol(side)
    protocol.receive_eof()
    protocol.data_to_send()
    protocol.fail(1011)
    assert protocol.data_to_send() == []
    assert protocol.state is State.CLOSED


def test_protocol_error_while_closing(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side)
    protocol.send_close(1000)
    protocol.data_to_send()
    protocol.receive_data(make(0x3))
    assert isinstance(protocol.failure, ProtocolError)
    assert protocol.data_to_send() == ([b""] if side is Side.SERVER else [])
    assert protocol.state is State.CLOSING
    protocol.receive_eof()
    assert protocol.close_code == 1006
    exc = protocol.close_exc()
    assert exc.__cause__ is protocol.failure


def test_close_exc_is_chained_to_the_failure(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(TEXT, b"\xff"))
    protocol.receive_eof()
    exc = protocol.close_exc()
    assert type(exc) is ConnectionClosedError
    assert isinstance(exc.__cause__, UnicodeDecodeError)
    assert exc.sent == Close(1007, "invalid UTF-8")


# --- errors after valid messages: the application answers first --------------


def test_error_after_a_message_waits_for_data_to_send(
    side: Side, make: Callable[..., bytes]
) -> None:
    # Autobahn 3.2, 4.1.3, 5.15...: a valid message then an invalid frame in
    # the same chunk. The reply to the message must precede the close frame.
    protocol = Protocol(side)
    protocol.receive_data(
        make(TEXT, b"Hello, world!") + make(TEXT, b"bad", rsv=2) + make(PING)
    )
    assert events(protocol) == [(Opcode.TEXT, b"Hello, world!", True)]
    assert protocol.state is State.OPEN
    assert isinstance(protocol.pending_failure, ProtocolError)
    assert protocol.failure is None
    protocol.send_text(b"Hello, world!")
    out = output(protocol)
    assert out.frames == [
        Out(TEXT, b"Hello, world!", True, 0),
        Out(CLOSE, close_payload(1002) + out.frames[1].data[2:], True, 0),
    ]
    assert out.eof is (side is Side.SERVER)
    assert protocol.state is State.CLOSING
    assert protocol.pending_failure is None
    assert isinstance(protocol.failure, ProtocolError)
    # The ping after the error was not processed.
    assert protocol.events_received() == []


def test_error_after_a_message_then_eof(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(BINARY, b"ok") + make(0x5))
    assert len(protocol.events_received()) == 1
    protocol.receive_eof()
    assert protocol.state is State.CLOSED
    assert isinstance(protocol.failure, ProtocolError)
    out = output(protocol)
    assert [f.opcode for f in out.frames] == [CLOSE]
    assert out.eof


def test_error_after_collected_events_fails_at_once(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(BINARY, b"ok"))
    protocol.events_received()
    protocol.receive_data(make(0x5))
    assert protocol.pending_failure is None
    assert protocol.state is State.CLOSING


def test_error_after_a_ping_fails_at_once(
    side: Side, make: Callable[..., bytes]
) -> None:
    # Only data messages may need an answer from the application.
    protocol = Protocol(side)
    protocol.receive_data(make(PING, b"p") + make(0x5))
    assert protocol.pending_failure is None
    out = output(protocol)
    assert [f.opcode for f in out.frames] == [PONG, CLOSE]


def test_fail_overrides_a_pending_failure(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side)
    protocol.receive_data(make(BINARY, b"ok") + make(0x5))
    protocol.fail(1001)
    assert protocol.pending_failure is None
    assert [f.data for f in output(protocol).frames] == [close_payload(1001)]


# --- sending -----------------------------------------------------------------


def test_send_messages(side: Side) -> None:
    protocol = Protocol(side)
    protocol.send_text("café".encode())
    protocol.send_binary(b"\x00\x01")
    protocol.send_binary(bytearray(b"ba"))
    protocol.send_binary(memoryview(b"mv"))
    protocol.send_ping(b"ping")
    protocol.send_pong(b"pong")
    assert output(protocol) == Output(
        [
            Out(TEXT, "café".encode(), True, 0),
            Out(BINARY, b"\x00\x01", True, 0),
            Out(BINARY, b"ba", True, 0),
            Out(BINARY, b"mv", True, 0),
            Out(PING, b"ping", True, 0),
            Out(PONG, b"pong", True, 0),
        ],
        False,
    )


def test_send_copies_mutable_buffers(side: Side) -> None:
    protocol = Protocol(side)
    data = bytearray(b"x" * 5000)
    protocol.send_binary(data)
    data[:] = b"y" * 5000
    assert output(protocol).frames[0].data == b"x" * 5000


def test_send_large_payload_chunks(side: Side) -> None:
    protocol = Protocol(side)
    data = os.urandom(100_000)
    protocol.send_binary(data)
    chunks = protocol.data_to_send()
    if side is Side.SERVER:
        # Header and payload apart, the payload not copied: sendmsg() ready.
        assert len(chunks) == 2
        assert chunks[1] is data
    else:
        assert len(chunks) == 1
        assert chunks[0][14:] != data[: len(chunks[0]) - 14]  # masked


def test_send_fragmented_message(side: Side) -> None:
    protocol = Protocol(side)
    protocol.send_text(b"a", fin=False)
    # Control frames may be interleaved (RFC 6455 §5.4).
    protocol.send_ping(b"p")
    protocol.send_continuation(b"b", fin=False)
    protocol.send_continuation(b"c", fin=True)
    protocol.send_binary(b"d", fin=False)
    protocol.send_continuation(b"e", fin=True)
    assert output(protocol).frames == [
        Out(TEXT, b"a", False, 0),
        Out(PING, b"p", True, 0),
        Out(CONT, b"b", False, 0),
        Out(CONT, b"c", True, 0),
        Out(BINARY, b"d", False, 0),
        Out(CONT, b"e", True, 0),
    ]


def test_send_fragmentation_errors(side: Side) -> None:
    protocol = Protocol(side)
    with pytest.raises(ProtocolError):
        protocol.send_continuation(b"x", fin=True)
    protocol.send_binary(b"x", fin=False)
    with pytest.raises(ProtocolError):
        protocol.send_text(b"y")
    with pytest.raises(ProtocolError):
        protocol.send_binary(b"y")
    protocol.send_continuation(b"z", fin=True)
    with pytest.raises(ProtocolError):
        protocol.send_continuation(b"x", fin=True)


def test_close_during_a_fragmented_send(side: Side) -> None:
    protocol = Protocol(side)
    protocol.send_text(b"a", fin=False)
    protocol.send_close(1000)
    assert [f.opcode for f in output(protocol).frames] == [TEXT, CLOSE]


@pytest.mark.parametrize("method", ["send_ping", "send_pong"])
def test_send_control_frame_too_long(side: Side, method: str) -> None:
    protocol = Protocol(side)
    getattr(protocol, method)(b"x" * 125)
    with pytest.raises(ProtocolError):
        getattr(protocol, method)(b"x" * 126)
    assert len(output(protocol).frames) == 1


def test_client_masks_with_fresh_keys() -> None:
    protocol = Protocol(Side.CLIENT)
    # More frames than keys drawn at once from os.urandom().
    for _ in range(300):
        protocol.send_binary(b"same")
    data = b"".join(protocol.data_to_send())
    assert len(data) == 300 * 10
    keys = [data[i + 2 : i + 6] for i in range(0, len(data), 10)]
    # 300 random 32-bit keys: a collision has a probability of 1e-5.
    assert len(set(keys)) >= 299
    assert output_of(data) == [b"same"] * 300


def same_keys(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make the masking keys start over, the same, at each call of the result."""
    keys = [os.urandom(4) for _ in range(64)]

    def start_over() -> None:
        sequence = iter(keys)
        monkeypatch.setattr(protocol_module, "_masking_key", lambda: next(sequence))

    return start_over


def test_debug_doesnt_change_what_is_sent(
    side: Side, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without extensions or debug logging, data frames skip building a Frame:
    # the bytes must be those of the general path (taken with debug on).
    logger = logging.getLogger("test.wssync.send_paths")
    logger.setLevel(logging.DEBUG)
    fast, slow = Protocol(side), Protocol(side, logger=logger)
    assert not fast.debug and slow.debug
    start_over = same_keys(monkeypatch)
    for protocol in (fast, slow):
        start_over()  # the same masking keys for both
        protocol.send_text(b"caf\xc3\xa9")
        protocol.send_binary(b"\x00" * 200, fin=False)
        protocol.send_continuation(b"\xff" * 70000, fin=True)
        protocol.send_binary(b"")
    assert b"".join(fast.data_to_send()) == b"".join(slow.data_to_send())


def test_debug_doesnt_change_what_is_received(
    side: Side, make: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without extensions or debug logging, whole binary and ASCII text
    # messages skip _handle_frame(): the events must be those of the general
    # path (taken with debug on), around fragments and control frames too.
    logger = logging.getLogger("test.wssync.receive_paths")
    logger.setLevel(logging.DEBUG)
    fast, slow = Protocol(side), Protocol(side, logger=logger)
    data = (
        make(BINARY, b"\x00\xff" * 100)
        + make(TEXT, b"ascii")
        + make(TEXT, "café".encode())
        + make(TEXT, b"frag", fin=False)
        + make(PING, b"p")
        + make(CONT, b"ment", fin=True)
        + make(BINARY, b"")
        + make(TEXT, b"\xc3")  # not UTF-8: fails the connection
        + make(BINARY, b"after the failure")
    )
    start_over = same_keys(monkeypatch)
    taken = []
    for protocol in (fast, slow):
        start_over()  # the same masking keys for both
        protocol.receive_data(data)
        taken.append(events(protocol))
        # The failure's close frame is made here, with the keys of this run.
        taken.append(b"".join(protocol.data_to_send()))
    received, fast_output, slow_received, slow_output = taken
    assert received == [
        (BINARY, b"\x00\xff" * 100, True),
        (TEXT, b"ascii", True),
        (TEXT, "café".encode(), True),
        (TEXT, b"frag", False),
        (PING, b"p", True),
        (CONT, b"ment", True),
        (BINARY, b"", True),
    ]
    assert slow_received == received
    assert fast.close_code == slow.close_code
    assert fast_output == slow_output


def output_of(data: bytes) -> list[bytes]:
    payloads = []
    for i in range(0, len(data), 10):
        key = data[i + 2 : i + 6]
        payloads.append(
            bytes(b ^ key[j % 4] for j, b in enumerate(data[i + 6 : i + 10]))
        )
    return payloads


# --- extensions --------------------------------------------------------------


class Reverse(Extension):
    """A toy extension: reverses the payload of messages and flags them with RSV1.

    Like permessage-deflate, RSV1 is set on the first frame only and each
    frame of a flagged message is transformed.
    """

    name = "x-reverse"

    def __init__(self) -> None:
        self.decode_budgets: list[int | None] = []
        self.decoded: list[Frame] = []
        self.flagged = False
        self.sending = False

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        self.decode_budgets.append(max_size)
        self.decoded.append(frame)
        if frame.opcode is not Opcode.CONT:
            self.flagged = frame.rsv1
        elif frame.rsv1:
            raise ProtocolError("RSV1 on a continuation frame")
        if not self.flagged:
            return frame
        data = frame.data[::-1]
        if max_size is not None and len(data) > max_size:
            raise PayloadTooBig("too big once reversed")
        return frame._replace(data=data, rsv1=False)

    def encode(self, frame: Frame) -> Frame:
        first = frame.opcode is not Opcode.CONT
        return frame._replace(data=frame.data[::-1], rsv1=first)


class Tag(Extension):
    """A toy extension appending a tag, to check the order of extensions."""

    name = "x-tag"

    def __init__(self, tag: bytes) -> None:
        self.tag = tag

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        assert frame.data.endswith(self.tag)
        return frame._replace(data=frame.data[: -len(self.tag)])

    def encode(self, frame: Frame) -> Frame:
        return frame._replace(data=frame.data + self.tag)


class Broken(Extension):
    name = "x-broken"

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        raise ZeroDivisionError("bug")

    def encode(self, frame: Frame) -> Frame:
        return frame


def test_extension_encodes_outgoing_data_frames(side: Side) -> None:
    protocol = Protocol(side, extensions=[Reverse()])
    protocol.send_text(b"abc", fin=False)
    protocol.send_continuation(b"de", fin=True)
    protocol.send_ping(b"ping")
    protocol.send_close(1000)
    assert output(protocol).frames == [
        Out(TEXT, b"cba", False, 4),
        Out(CONT, b"ed", True, 0),
        # Control frames are not given to extensions.
        Out(PING, b"ping", True, 0),
        Out(CLOSE, close_payload(1000), True, 0),
    ]


def test_extension_decodes_incoming_frames(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    extension = Reverse()
    protocol = Protocol(side, extensions=[extension], max_size=100)
    feed(
        protocol,
        make(TEXT, "é".encode()[::-1] + b"cba", rsv=4, fin=False)
        + make(PING, b"ping")
        + make(CONT, b"ed")
        + make(BINARY, b"plain"),
    )
    assert protocol.events_received() == [
        Frame(Opcode.TEXT, b"abc" + "é".encode(), fin=False),
        Frame(Opcode.PING, b"ping"),
        Frame(Opcode.CONT, b"de"),
        Frame(Opcode.BINARY, b"plain"),
    ]
    assert protocol.state is State.OPEN
    # Each data frame gets the rest of the size budget; control frames skip
    # extensions.
    assert extension.decode_budgets == [100, 95, 100]
    assert [f.opcode for f in extension.decoded] == [
        Opcode.TEXT,
        Opcode.CONT,
        Opcode.BINARY,
    ]


def test_extension_round_trip() -> None:
    client = Protocol(Side.CLIENT, extensions=[Reverse(), Tag(b"#1"), Tag(b"#2")])
    server = Protocol(Side.SERVER, extensions=[Reverse(), Tag(b"#1"), Tag(b"#2")])
    client.send_text("hello ☃".encode())
    client.send_binary(b"bin", fin=False)
    client.send_continuation(b"ary", fin=True)
    for chunk in client.data_to_send():
        server.receive_data(chunk)
    assert server.events_received() == [
        Frame(Opcode.TEXT, "hello ☃".encode()),
        Frame(Opcode.BINARY, b"bin", fin=False),
        Frame(Opcode.CONT, b"ary"),
    ]


def test_extensions_apply_in_order() -> None:
    protocol = Protocol(Side.SERVER, extensions=[Tag(b"1"), Tag(b"2")])
    protocol.send_binary(b"x")
    assert output(protocol).frames == [Out(BINARY, b"x12", True, 0)]
    # RFC 6455 §9.1: decode in reverse order.
    protocol.receive_data(build(BINARY, b"y12", key=KEY))
    assert events(protocol) == [(Opcode.BINARY, b"y", True)]


def test_text_is_validated_after_decoding(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side, extensions=[Reverse()])
    # Valid once reversed, invalid as sent.
    protocol.receive_data(make(TEXT, "é".encode()[::-1], rsv=4))
    assert events(protocol) == [(Opcode.TEXT, "é".encode(), True)]
    protocol.receive_data(make(TEXT, "é".encode(), rsv=4))
    assert_failed(protocol, 1007, UnicodeDecodeError)


def test_extension_leaves_unknown_rsv_bits(
    side: Side, feed: Feed, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side, extensions=[Reverse()])
    feed(protocol, make(TEXT, b"abc", rsv=2))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


def test_extension_protocol_error(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side, extensions=[Reverse()])
    protocol.receive_data(make(TEXT, b"a", rsv=4, fin=False) + make(CONT, b"b", rsv=4))
    assert len(protocol.events_received()) == 1
    protocol.data_to_send()  # applies the failure deferred behind the first frame
    assert isinstance(protocol.failure, ProtocolError)
    assert protocol.close_sent == Close(1002, "RSV1 on a continuation frame")


def test_extension_payload_too_big(side: Side, make: Callable[..., bytes]) -> None:
    protocol = Protocol(side, extensions=[Reverse()], max_size=5)
    protocol.receive_data(make(BINARY, b"123456", rsv=4))
    assert_failed(protocol, 1009, PayloadTooBig)


def test_decoded_size_is_checked_after_extensions(
    side: Side, make: Callable[..., bytes]
) -> None:
    # An extension that ignores max_size: the protocol checks the result.
    class Grow(Extension):
        name = "x-grow"

        def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
            return frame._replace(data=frame.data * 10, rsv1=False)

        def encode(self, frame: Frame) -> Frame:
            return frame

    protocol = Protocol(side, extensions=[Grow()], max_size=50)
    protocol.receive_data(make(BINARY, b"12345", rsv=4))
    assert len(protocol.events_received()) == 1
    protocol.receive_data(make(BINARY, b"123456", rsv=4))
    assert_failed(protocol, 1009, PayloadTooBig)


def test_transformed_frames_get_some_slack_on_the_header_check(
    side: Side, make: Callable[..., bytes]
) -> None:
    # Compressed data can be a little bigger than what it decodes to; the
    # exact limit applies after decoding.
    class Shrink(Extension):
        name = "x-shrink"

        def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
            if frame.rsv1:
                return frame._replace(data=frame.data[:-20], rsv1=False)
            return frame

        def encode(self, frame: Frame) -> Frame:
            return frame

    protocol = Protocol(side, extensions=[Shrink()], max_size=1000)
    protocol.receive_data(make(BINARY, b"x" * 1020, rsv=4))
    assert events(protocol) == [(Opcode.BINARY, b"x" * 1000, True)]
    # Frames without RSV bits aren't transformed: no slack.
    protocol.receive_data(make(BINARY, b"x" * 1001)[:4])
    assert_failed(protocol, 1009, PayloadTooBig)


def test_broken_extension_is_an_internal_error(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side, extensions=[Broken()])
    protocol.receive_data(make(BINARY, b"x"))
    assert_failed(protocol, 1011, ZeroDivisionError)
    assert protocol.close_sent == Close(1011, "internal error")


def test_rsv_bits_allowed_with_extensions_are_checked_after_decoding(
    side: Side, make: Callable[..., bytes]
) -> None:
    protocol = Protocol(side, extensions=[Tag(b"!")])
    protocol.receive_data(make(BINARY, b"x!", rsv=4))
    assert protocol.events_received() == []
    assert_failed(protocol, 1002, ProtocolError)


# --- full conversations ------------------------------------------------------


def pump(source: Protocol, destination: Protocol) -> None:
    for chunk in source.data_to_send():
        if chunk:
            destination.receive_data(chunk)
        else:
            destination.receive_eof()


def test_round_trip_messages() -> None:
    client, server = (
        Protocol(Side.CLIENT, max_size=None),
        Protocol(Side.SERVER, max_size=None),
    )
    rng = random.Random(42)
    sent = []
    for _ in range(200):
        size = rng.choice([0, 1, 125, 126, 1000, 65535, 65536, 200_000])
        data = rng.randbytes(size) if hasattr(rng, "randbytes") else os.urandom(size)
        sender = rng.choice([client, server])
        if rng.random() < 0.5:
            sender.send_binary(data)
        else:
            text = data.hex().encode()
            sender.send_text(text[:size])
            data = text[:size]
        sent.append((sender, data))
        pump(client, server)
        pump(server, client)
    got_by_server = [f.data for f in server.events_received()]
    got_by_client = [f.data for f in client.events_received()]
    assert got_by_server == [data for sender, data in sent if sender is client]
    assert got_by_client == [data for sender, data in sent if sender is server]


@pytest.mark.parametrize("closer", [Side.CLIENT, Side.SERVER])
def test_closing_handshake_end_to_end(closer: Side) -> None:
    client, server = Protocol(Side.CLIENT), Protocol(Side.SERVER)
    first = client if closer is Side.CLIENT else server
    first.send_close(1000, "bye")
    pump(first, client if first is server else server)
    # Let the messages flow until both ends are closed.
    for _ in range(4):
        pump(client, server)
        pump(server, client)
    assert client.state is State.CLOSED
    assert server.state is State.CLOSED
    assert client.close_expected() is False
    for protocol in (client, server):
        exc = protocol.close_exc()
        assert isinstance(exc, ConnectionClosedOK)
        assert exc.rcvd_then_sent is (protocol is not first)
    # The server sent its EOF first; the client answered it.
    assert server.eof_sent and client.eof_sent
    assert client.close_code == 1000
    assert server.close_code == 1000
    assert (client if first is server else server).close_reason == "bye"


def test_ping_pong_end_to_end() -> None:
    client, server = Protocol(Side.CLIENT), Protocol(Side.SERVER)
    client.send_ping(b"1234")
    pump(client, server)
    assert events(server) == [(Opcode.PING, b"1234", True)]
    pump(server, client)
    assert events(client) == [(Opcode.PONG, b"1234", True)]


# --- logging and misc --------------------------------------------------------


def test_debug_logging(
    side: Side, make: Callable[..., bytes], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("test.wssync.protocol")
    logger.setLevel(logging.DEBUG)
    protocol = Protocol(side, logger=logger)
    assert protocol.debug
    with caplog.at_level(logging.DEBUG, logger="test.wssync.protocol"):
        protocol.send_text(b"hello")
        protocol.receive_data(
            make(BINARY, b"\x01\x02") + make(CLOSE, close_payload(1000, b"bye"))
        )
        protocol.receive_eof()
    messages = [record.getMessage() for record in caplog.records]
    assert "> TEXT 'hello' [5 bytes]" in messages
    assert "< BINARY 0102 [2 bytes]" in messages
    assert "< CLOSE 1000 bye [5 bytes]" in messages
    assert "> CLOSE 1000 [2 bytes]" in messages
    assert "< EOF" in messages


def test_no_logging_unless_debug(
    side: Side, make: Callable[..., bytes], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("test.wssync.quiet")
    logger.setLevel(logging.INFO)
    protocol = Protocol(side, logger=logger)
    assert not protocol.debug
    with caplog.at_level(logging.INFO, logger="test.wssync.quiet"):
        protocol.send_text(b"hello")
        protocol.receive_data(make(BINARY, b"x"))
    assert caplog.records == []


def test_default_logger(side: Side) -> None:
    protocol = Protocol(side)
    expected = "wssync.client" if side is Side.CLIENT else "wssync.server"
    assert protocol.logger.name == expected


def test_ok_close_codes() -> None:
    assert {1000, 1001, 1005} == OK_CLOSE_CODES


def test_state_and_side_values() -> None:
    assert [int(s) for s in State] == [0, 1, 2, 3]
    assert [s.name for s in State] == ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]
    assert (int(Side.SERVER), int(Side.CLIENT)) == (0, 1)
