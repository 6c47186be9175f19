"""Property-based tests (hypothesis) of the parsers that face the network.

Issue 4, "Done when": arbitrary bytes, fed in arbitrary chunks, only ever
produce the documented errors and close codes, and never make a parser hold
more than its limits; what is serialized parses back to the same thing.

- the frame parser (:class:`~wssync.sansio.protocol.Protocol`), with and
  without permessage-deflate: ``test_protocol_*``;
- the HTTP parser (:mod:`wssync.sansio.http11`): ``test_request_parser_*``,
  ``test_response_parser_*``, ``test_*_round_trip``;
- the deflate extension through the core and the handshake:
  ``test_protocol_*`` with ``deflate``, ``test_deflate_*``.

tests/sansio/extensions/test_permessage_deflate.py already checks the
extension's ``decode()`` on arbitrary payloads and its own round trips;
these tests drive it through the protocol core instead, with frames cut at
arbitrary places, and through the handshake's negotiation.
"""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rawpeer import build_frame

from wssync.exceptions import InvalidMessage, PayloadTooBig, ProtocolError
from wssync.sansio.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from wssync.sansio.frames import Close, Frame, Opcode
from wssync.sansio.handshake import ServerHandshake
from wssync.sansio.headers import Headers
from wssync.sansio.http11 import (
    MAX_BODY_SIZE,
    MAX_HEAD_SIZE,
    MAX_NUM_HEADERS,
    Request,
    RequestParser,
    Response,
    ResponseParser,
    parse_request,
    parse_response,
)
from wssync.sansio.protocol import Protocol, Side, State

pytestmark = pytest.mark.timeout(120)

PROPERTY = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The close codes the core may send on bad input (RFC 6455 §7.4.1): protocol
# error, invalid data (UTF-8), message too big. 1011 (internal error) would
# mean an unexpected exception: a bug.
INPUT_ERROR_CODES = {1002: ProtocolError, 1007: UnicodeDecodeError, 1009: PayloadTooBig}

# The statuses a server answers a bad request with (RequestParser.parse).
REQUEST_ERROR_STATUSES = {400, 405, 414, 431, 505}

OTHER_SIDE = {Side.CLIENT: Side.SERVER, Side.SERVER: Side.CLIENT}


def split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``data`` in pieces, cut at the given offsets (taken modulo its length)."""
    if not data:
        yield data
        return
    bounds = sorted({cut % len(data) for cut in cuts} - {0})
    for start, end in zip([0, *bounds], [*bounds, len(data)]):
        yield data[start:end]


cuts_strategy = st.lists(st.integers(0, 1 << 24), max_size=12)


def deflate() -> PerMessageDeflate:
    """permessage-deflate with RFC 7692's defaults: window 15, context takeover."""
    return PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=False,
        remote_max_window_bits=15,
        local_max_window_bits=15,
    )


def raw_deflate(data: bytes, window_bits: int = 15) -> bytes:
    """``data`` compressed as a permessage-deflate payload (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -max(9, window_bits))
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


# --------------------------------------------------------------- frame parser


@st.composite
def wire_frames(draw: st.DrawFn, masked: bool, deflated: bool) -> bytes:
    """A frame as a peer might send it: mostly plausible, sometimes not."""
    opcode = draw(
        st.one_of(st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]), st.integers(0, 15))
    )
    kinds = [
        st.binary(max_size=300),
        st.text(max_size=100).map(str.encode),
        # Close payloads, with codes valid or not, reasons valid or not.
        st.builds(
            lambda code, reason: struct.pack("!H", code) + reason,
            st.integers(0, 65535),
            st.one_of(st.text(max_size=30).map(str.encode), st.binary(max_size=5)),
        ),
    ]
    if deflated:  # compressed data, for a peer that negotiated permessage-deflate
        kinds.append(
            st.one_of(
                st.text(max_size=200).map(str.encode), st.binary(max_size=200)
            ).map(raw_deflate)
        )
    payload = draw(st.one_of(kinds))
    return build_frame(
        opcode,
        payload,
        mask=draw(st.sampled_from([masked] * 6 + [not masked])),
        fin=draw(st.sampled_from([True, True, False])),
        rsv=draw(st.sampled_from([0] * 4 + [4] * (3 if deflated else 1) + [2, 1])),
        length_bytes=draw(st.sampled_from([None] * 6 + [2, 8])),
    )


@st.composite
def peer_streams(draw: st.DrawFn, side: Side, deflated: bool) -> bytes:
    """Bytes from the peer of ``side``: frames, possibly damaged, or noise."""
    masked = side is Side.SERVER  # clients mask (RFC 6455 §5.1)
    frames = draw(st.lists(wire_frames(masked, deflated), max_size=8))
    data = bytearray(b"".join(frames))
    for position, byte in draw(
        st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=3)
    ):
        if data:  # damage: overwrite a byte somewhere
            data[position % len(data)] = byte
    if draw(st.booleans()):
        data += draw(st.binary(max_size=50))  # trailing noise
    return bytes(data)


class MessageChecker:
    """Checks the frames a Protocol delivers, as an application would see them."""

    def __init__(self, max_size: int | None) -> None:
        self.max_size = max_size
        self.opcode: Opcode | None = None  # message in progress
        self.parts: list[bytes] = []
        self.messages: list[tuple[Opcode, bytes]] = []
        self.controls: list[Frame] = []

    def check(self, frames: list[Frame]) -> None:
        for frame in frames:
            # Extensions consumed the RSV bits they define; others are refused.
            assert not (frame.rsv1 or frame.rsv2 or frame.rsv3), frame
            if frame.opcode in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
                # RFC 6455 §5.5: control frames are whole and short.
                assert frame.fin and len(frame.data) <= 125, frame
                self.controls.append(frame)
                continue
            if frame.opcode is Opcode.CONT:
                assert self.opcode is not None, "continuation without a message"
            else:
                assert self.opcode is None, "new message inside a message"
                self.opcode = frame.opcode
            self.parts.append(frame.data)
            size = sum(map(len, self.parts))
            if self.max_size is not None:
                assert size <= self.max_size, (size, self.max_size)
            if frame.fin:
                data = b"".join(self.parts)
                if self.opcode is Opcode.TEXT:
                    data.decode("utf-8")  # RFC 6455 §8.1: validated already
                self.messages.append((self.opcode, data))
                self.opcode, self.parts = None, []


def check_failure(protocol: Protocol) -> None:
    """If the core failed the connection, it was for a documented reason."""
    if protocol.failure is None:
        return
    assert protocol.close_sent is not None
    code = protocol.close_sent.code
    assert code in INPUT_ERROR_CODES, (code, protocol.failure)
    assert isinstance(protocol.failure, INPUT_ERROR_CODES[code]), protocol.failure
    if code == 1002:
        assert not isinstance(protocol.failure, PayloadTooBig)
    assert protocol.state is not State.OPEN


@settings(PROPERTY, max_examples=60)
@given(
    data=st.data(),
    side=st.sampled_from(Side),
    deflated=st.booleans(),
    max_size=st.sampled_from([None, 0, 1, 125, 126, 1000, 1 << 20]),
    cuts=cuts_strategy,
)
def test_protocol_arbitrary_input_only_documented_close_codes(
    data: st.DataObject,
    side: Side,
    deflated: bool,
    max_size: int | None,
    cuts: list[int],
) -> None:
    stream = data.draw(peer_streams(side, deflated))
    extensions = [deflate()] if deflated else []
    protocol = Protocol(side, extensions=extensions, max_size=max_size)
    checker = MessageChecker(max_size)
    for chunk in split(stream, cuts):
        protocol.receive_data(chunk)  # never raises: errors become close codes
        checker.check(protocol.events_received())
        output = protocol.data_to_send()
        assert all(isinstance(piece, bytes) for piece in output)
        if protocol.state is State.OPEN:
            assert protocol.failure is None
    check_failure(protocol)
    if protocol.close_rcvd is not None and protocol.failure is None:
        # The peer closed: the core answered with the same code.
        assert protocol.close_sent is not None
        assert protocol.close_sent.code == protocol.close_rcvd.code
    protocol.receive_eof()
    checker.check(protocol.events_received())
    assert protocol.state is State.CLOSED
    check_failure(protocol)


@PROPERTY
@given(
    stream=st.binary(max_size=2000),
    side=st.sampled_from(Side),
    deflated=st.booleans(),
    cuts=cuts_strategy,
)
def test_protocol_noise_only_documented_close_codes(
    stream: bytes, side: Side, deflated: bool, cuts: list[int]
) -> None:
    extensions = [deflate()] if deflated else []
    protocol = Protocol(side, extensions=extensions, max_size=1000)
    checker = MessageChecker(1000)
    for chunk in split(stream, cuts):
        protocol.receive_data(chunk)
        checker.check(protocol.events_received())
        protocol.data_to_send()
    check_failure(protocol)


@PROPERTY
@given(
    side=st.sampled_from(Side),
    deflated=st.booleans(),
    max_size=st.integers(0, 1 << 20),
    excess=st.integers(1, 1 << 40),
    opcode=st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.CONT]),
    before=st.integers(0, 1000),
    cuts=cuts_strategy,
)
def test_protocol_refuses_oversized_frame_from_its_header(
    side: Side,
    deflated: bool,
    max_size: int,
    excess: int,
    opcode: Opcode,
    before: int,
    cuts: list[int],
) -> None:
    # A frame announcing more than the message may still hold fails the
    # connection with 1009 as soon as its header is complete: the parser
    # never waits for (nor buffers) a payload it would refuse.
    masked = side is Side.SERVER
    wire = b""
    used = 0
    if opcode is Opcode.CONT:  # a message in progress, then its next frame
        used = min(before, max_size)
        first = raw_deflate(b"a" * used) if deflated else b"a" * used
        wire += build_frame(
            0x2, first, mask=masked, fin=False, rsv=4 if deflated else 0
        )
    budget = max_size - used
    # With compression, a frame may be a little bigger than what it decodes
    # to; "a little" stays below the budget plus as much again and 4 KiB.
    slack = budget + 4096 if deflated else 0
    announced = budget + slack + excess
    # RFC 7692 §6.1: RSV1 marks the first frame of a compressed message.
    rsv = 4 if deflated and opcode is not Opcode.CONT else 0
    header = build_frame(opcode, b"", mask=masked, fin=False, rsv=rsv, length=announced)
    wire += header
    protocol = Protocol(
        side,
        extensions=[deflate()] if deflated else [],
        max_size=max_size,
    )
    for chunk in split(wire, cuts):
        protocol.receive_data(chunk)
    protocol.data_to_send()
    assert protocol.close_sent is not None, "the header alone should be refused"
    assert protocol.close_sent.code == 1009
    assert isinstance(protocol.failure, PayloadTooBig)


@settings(deadline=None, max_examples=15)
@given(
    side=st.sampled_from(Side),
    deflated=st.booleans(),
    max_size=st.sampled_from([1 << 12, 1 << 14, 1 << 16]),
    frame_size=st.integers(1, 1 << 14),
    chunk_size=st.integers(256, 4096),
)
def test_protocol_memory_bounded_by_max_size(
    side: Side, deflated: bool, max_size: int, frame_size: int, chunk_size: int
) -> None:
    # One message much bigger than max_size (16x), in frames of any size, fed
    # in chunks: the core fails it with 1009 and never holds much more than
    # max_size. Compressed, it is a bomb: 16x max_size of zeros.
    masked = side is Side.SERVER
    total = 16 * max_size
    wire = bytearray()
    payload = raw_deflate(bytes(total)) if deflated else bytes(total)
    pieces = [payload[i : i + frame_size] for i in range(0, len(payload), frame_size)]
    for index, piece in enumerate(pieces):
        wire += build_frame(
            0x2 if index == 0 else 0x0,
            piece,
            mask=masked,
            fin=index == len(pieces) - 1,
            rsv=4 if deflated and index == 0 else 0,
        )
    protocol = Protocol(
        side,
        extensions=[deflate()] if deflated else [],
        max_size=max_size,
    )
    view = memoryview(bytes(wire))
    del wire, payload, pieces
    delivered = 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        for start in range(0, len(view), chunk_size):
            protocol.receive_data(view[start : start + chunk_size])
            delivered += sum(len(f.data) for f in protocol.events_received())
            protocol.data_to_send()
            if protocol.state is not State.OPEN:
                break
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert protocol.close_sent is not None and protocol.close_sent.code == 1009
    assert delivered <= max_size
    # The frames delivered so far (the application hasn't taken them) and
    # the frame being parsed: about max_size, not the 16x that was sent.
    assert peak < 3 * max_size + (256 << 10), peak


# Operations of a sender: whole messages, fragmented ones with control frames
# between the fragments, pings and pongs.
Operation = tuple[str, Any]

payloads = st.one_of(
    st.binary(max_size=500), st.integers(0, 5000).map(lambda n: b"ab" * n)
)
texts = st.text(max_size=300)
control_payloads = st.binary(max_size=125)


@st.composite
def operations(draw: st.DrawFn) -> Operation:
    kind = draw(st.sampled_from(["text", "binary", "fragmented", "ping", "pong"]))
    if kind == "text":
        return kind, draw(texts).encode()
    if kind == "binary":
        return kind, draw(payloads)
    if kind in ("ping", "pong"):
        return kind, draw(control_payloads)
    text = draw(st.booleans())
    data = draw(texts).encode() if text else draw(payloads)
    # Cut anywhere, even inside a UTF-8 sequence: only the whole message
    # must be valid UTF-8 (RFC 6455 §5.6).
    pieces = list(split(data, draw(st.lists(st.integers(0, 1 << 16), max_size=5))))
    pieces += [b""] * draw(st.integers(0, 1))  # an empty last fragment
    between = draw(
        st.lists(
            st.one_of(
                st.none(),
                st.tuples(st.sampled_from(["ping", "pong"]), control_payloads),
            ),
            min_size=len(pieces),
            max_size=len(pieces),
        )
    )
    return "fragmented", (text, pieces, between)


Item = tuple[str, bytes]


def send(protocol: Protocol, operation: Operation) -> list[Item]:
    """Have ``protocol`` send ``operation``; return what the peer should see."""
    kind, value = operation
    if kind == "text":
        protocol.send_text(value)
        return [("text", value)]
    if kind == "binary":
        protocol.send_binary(value)
        return [("binary", value)]
    if kind == "ping":
        protocol.send_ping(value)
        return [("ping", value)]
    if kind == "pong":
        protocol.send_pong(value)
        return [("pong", value)]
    text, pieces, between = value
    seen: list[Item] = []
    first, *rest = pieces
    if text:
        protocol.send_text(first, fin=not rest)
    else:
        protocol.send_binary(first, fin=not rest)
    for index, piece in enumerate(rest):
        control = between[index]
        if control is not None:  # RFC 6455 §5.4: between fragments
            getattr(protocol, f"send_{control[0]}")(control[1])
            seen.append(control)
        protocol.send_continuation(piece, fin=index == len(rest) - 1)
    seen.append(("text" if text else "binary", b"".join(pieces)))
    return seen


def observe(frames: list[Frame], partial: list[bytes]) -> list[Item]:
    """What an application sees in ``frames``: messages and control frames."""
    seen: list[Item] = []
    for frame in frames:
        if frame.opcode in (Opcode.PING, Opcode.PONG):
            seen.append((frame.opcode.name.lower(), frame.data))
            continue
        if frame.opcode is not Opcode.CONT:
            partial[:] = ["text" if frame.opcode is Opcode.TEXT else "binary"]
        partial.append(frame.data)
        if frame.fin:
            seen.append((partial[0], b"".join(partial[1:])))
            partial[:] = []
    return seen


@PROPERTY
@given(
    ops=st.lists(operations(), max_size=10),
    side=st.sampled_from(Side),
    compression=st.one_of(
        st.none(),
        st.tuples(st.booleans(), st.integers(9, 15), st.sampled_from([0, 1, 9])),
    ),
    close=st.tuples(
        st.sampled_from([1000, 1001, 1011, 3000, 4999]), st.text(max_size=20)
    ),
    cuts=cuts_strategy,
)
def test_protocol_round_trip(
    ops: list[Operation],
    side: Side,
    compression: tuple[bool, int, int] | None,
    close: tuple[int, str],
    cuts: list[int],
) -> None:
    # Whatever one side sends, the other receives, however the bytes are cut.
    code, reason = close
    assume(len(reason.encode()) <= 123)
    sender_ext: list[Any] = []
    receiver_ext: list[Any] = []
    if compression is not None:
        no_context_takeover, window_bits, level = compression
        options = dict(
            remote_no_context_takeover=no_context_takeover,
            local_no_context_takeover=no_context_takeover,
            remote_max_window_bits=window_bits,
            local_max_window_bits=window_bits,
        )
        sender_ext = [PerMessageDeflate(**options, compress_settings={"level": level})]
        receiver_ext = [PerMessageDeflate(**options)]
    sender = Protocol(side, extensions=sender_ext)
    receiver = Protocol(OTHER_SIDE[side], extensions=receiver_ext, max_size=None)
    expected: list[Item] = []
    for operation in ops:
        expected += send(sender, operation)
    sender.send_close(code, reason)
    wire = b"".join(sender.data_to_send())
    assert b"" not in sender.data_to_send()
    seen: list[Item] = []
    partial: list[bytes] = []
    for chunk in split(wire, cuts):
        receiver.receive_data(chunk)
        events = receiver.events_received()
        seen += observe([e for e in events if e.opcode is not Opcode.CLOSE], partial)
        receiver.data_to_send()
    assert receiver.failure is None, receiver.failure
    assert seen == expected
    assert receiver.close_rcvd == Close(code, reason)
    assert receiver.state is State.CLOSING


# ---------------------------------------------------------------- HTTP parser

TOKENS = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=20,
)
FIELD_VALUES = st.text(
    alphabet=st.characters(
        codec="latin-1",
        exclude_characters="\r\n\x00\x7f",
        exclude_categories=["Cc"],
    ),
    max_size=60,
).map(lambda value: value.strip(" \t"))


@st.composite
def header_lines(draw: st.DrawFn) -> bytes:
    name = draw(
        st.one_of(
            st.sampled_from(
                [
                    "Host",
                    "Upgrade",
                    "Connection",
                    "Sec-WebSocket-Key",
                    "Content-Length",
                    "Transfer-Encoding",
                ]
            ),
            TOKENS,
        )
    ).encode()
    value = draw(
        st.one_of(
            FIELD_VALUES.map(lambda v: v.encode("latin-1")),
            st.binary(max_size=30),
            st.integers(0, 9000).map(lambda n: b"v" * n),
            st.sampled_from([b"0", b"12", b"chunked", b"-1", b"1, 1", b"1, 2"]),
        )
    )
    colon = draw(st.sampled_from([b": ", b":", b" : ", b":\t", b""]))
    prefix = draw(st.sampled_from([b""] * 10 + [b" "]))  # obs-fold
    return prefix + name + colon + value


@st.composite
def http_messages(draw: st.DrawFn, request: bool) -> bytes:
    """A request or response head (and body), plausible or broken."""
    eol = draw(st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r"]))
    if request:
        method = draw(st.sampled_from([b"GET"] * 6 + [b"POST", b"get", b"G T", b""]))
        target = draw(
            st.one_of(
                st.sampled_from([b"/", b"/chat?room=1", b"*", b"http://h/p"]),
                st.binary(max_size=20),
                st.integers(0, 9000).map(lambda n: b"/" + b"a" * n),
            )
        )
        version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0"]))
        start = method + b" " + target + b" " + version
    else:
        status = draw(
            st.sampled_from([b"101", b"200", b"400", b"100", b"204", b"999", b"1x1"])
        )
        version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/3"]))
        start = version + b" " + status + b" " + draw(st.sampled_from([b"OK", b""]))
    fields = draw(st.lists(header_lines(), max_size=8))
    if request and draw(st.booleans()):
        fields.insert(0, b"Host: example.com")
    repeat = draw(st.sampled_from([1] * 8 + [20, 150]))  # to reach the limits
    head = eol.join([start, *fields * repeat]) + eol + eol
    head = draw(st.sampled_from([b"", b"\r\n", b"\r\n" * 3])) + head
    body = b""
    if not request:
        body = draw(
            st.one_of(
                st.binary(max_size=100),
                st.lists(
                    st.tuples(st.binary(max_size=40), st.binary(max_size=10)),
                    max_size=6,
                ).map(
                    lambda chunks: (
                        b"".join(
                            b"%x%s\r\n%s\r\n" % (len(data), ext, data)
                            for data, ext in chunks
                        )
                        + b"0\r\n\r\n"
                    )
                ),
            )
        )
    message = head + body
    cut = draw(st.one_of(st.none(), st.integers(0, len(message))))
    if cut is not None:
        message = message[:cut]  # the connection ended early
    return message + draw(st.binary(max_size=20))  # what follows


def feed(parser: Any, data: bytes, cuts: list[int], **kwargs: Any) -> Any:
    """Feed ``data`` to ``parser`` in pieces, as a connection would.

    Returns:
        ``(result, buffered)``: the first non-None result or exception, and
        how many bytes the buffer held then.
    """
    buf = bytearray()
    for chunk in split(data, cuts):
        buf += chunk
        try:
            result = parser.parse(buf, **kwargs)
        except InvalidMessage as exc:
            return exc, len(buf)
        if result is not None:
            return result, len(buf)
        assert len(buf) <= bound_for(parser), len(buf)
    return None, len(buf)


def bound_for(parser: Any) -> int:
    """Most bytes a parser may ask to keep before it has a result.

    A request is its head; a response's body adds at most MAX_BODY_SIZE, plus
    the framing of a chunked body, which RFC 7230 §4.1 makes a few bytes per
    chunk: counted generously here as much again and the trailers.
    """
    if isinstance(parser, RequestParser):
        return MAX_HEAD_SIZE
    return MAX_HEAD_SIZE + 2 * MAX_BODY_SIZE + MAX_HEAD_SIZE


@settings(PROPERTY, max_examples=60)
@given(data=http_messages(request=True), cuts=cuts_strategy)
def test_request_parser_arbitrary_input(data: bytes, cuts: list[int]) -> None:
    result, buffered = feed(RequestParser(), data, cuts)
    # The same bytes at once: the same outcome (an error may be found at a
    # different place, with a different status, but an error it is).
    try:
        whole: Any = parse_request(data)
    except InvalidMessage as exc:
        whole = exc
    if isinstance(result, InvalidMessage):
        assert result.status_code in REQUEST_ERROR_STATUSES, result
        assert isinstance(whole, InvalidMessage), whole
        assert whole.status_code in REQUEST_ERROR_STATUSES, whole
        return
    if result is None:
        assert buffered <= MAX_HEAD_SIZE
        assert whole is None or isinstance(whole, InvalidMessage)
        return
    request, consumed = result
    assert not isinstance(whole, InvalidMessage), whole
    assert whole is not None and whole[1] == consumed
    assert whole[0] == request
    assert consumed <= MAX_HEAD_SIZE
    assert request.method == "GET"
    assert len(request.headers.get_all("Host")) == 1
    assert len(list(request.headers.raw_items())) <= MAX_NUM_HEADERS
    # Nothing after the head was taken as part of it.
    assert parse_request(data[:consumed]) == (request, consumed)


@PROPERTY
@given(data=http_messages(request=False), cuts=cuts_strategy)
def test_response_parser_arbitrary_input(data: bytes, cuts: list[int]) -> None:
    parser = ResponseParser()
    result, _ = feed(parser, data, cuts)
    if result is None:
        # The connection closes: now the response is complete, or an error.
        try:
            result = parser.parse(bytearray(data), eof=True)
        except InvalidMessage as exc:
            result = exc
        assert result is not None
    try:
        whole: Any = parse_response(data, eof=True)
    except InvalidMessage as exc:
        whole = exc
    if isinstance(result, InvalidMessage):
        assert isinstance(whole, InvalidMessage), whole
        return
    response, consumed = result
    assert consumed <= len(data)
    assert len(response.body) <= MAX_BODY_SIZE
    assert not isinstance(whole, InvalidMessage), whole
    assert whole[0] == response


def test_response_parser_bounds_chunk_extensions() -> None:
    # A hostile server answers with 1-byte chunks, each with 8 KB of chunk
    # extensions (RFC 7230 §4.1.1, ignored by the parser): the body stays
    # tiny, but a client keeping every byte until the body is complete
    # would hold 8 KB per byte of body, gigabytes before MAX_BODY_SIZE.
    parser = ResponseParser()
    buf = bytearray(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"1;" + b"e" * 8000 + b"\r\nx\r\n"
    with pytest.raises(InvalidMessage):
        while len(buf) <= bound_for(parser):
            buf += chunk
            assert parser.parse(buf) is None
    assert len(buf) <= bound_for(parser) + len(chunk)


REQUEST_HEADER_NAMES = TOKENS.filter(
    lambda name: name.lower() not in ("host", "content-length", "transfer-encoding")
)


@PROPERTY
@given(
    path=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
        min_size=1,
        max_size=100,
    ),
    fields=st.lists(st.tuples(REQUEST_HEADER_NAMES, FIELD_VALUES), max_size=20),
    host=FIELD_VALUES.filter(bool),
    cuts=cuts_strategy,
)
def test_request_round_trip(
    path: str, fields: list[tuple[str, str]], host: str, cuts: list[int]
) -> None:
    headers = Headers([("Host", host), *fields])
    request = Request(path, headers)
    wire = request.serialize()
    result, _ = feed(RequestParser(), wire + b"\x81\x00", cuts)
    assert not isinstance(result, Exception), result
    parsed, consumed = result
    assert consumed == len(wire)
    assert parsed.path == path
    assert list(parsed.headers.raw_items()) == list(headers.raw_items())


@PROPERTY
@given(
    status=st.integers(100, 999).filter(lambda s: s != 101 and not 100 <= s < 200),
    reason=st.text(
        alphabet=st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=30
    ),
    fields=st.lists(
        st.tuples(
            TOKENS.filter(
                lambda name: name.lower() not in ("content-length", "transfer-encoding")
            ),
            FIELD_VALUES,
        ),
        max_size=20,
    ),
    body=st.binary(max_size=2000),
    cuts=cuts_strategy,
)
def test_response_round_trip(
    status: int,
    reason: str,
    fields: list[tuple[str, str]],
    body: bytes,
    cuts: list[int],
) -> None:
    if status in (204, 304):
        body = b""
    response = Response(status, reason, Headers(fields), body)
    wire = response.serialize()
    result, _ = feed(ResponseParser(), wire + b"after", cuts)
    assert not isinstance(result, Exception), result
    parsed, consumed = result
    assert consumed == len(wire)
    assert (parsed.status_code, parsed.reason_phrase) == (status, reason)
    assert parsed.body == body
    got = [(n, v) for n, v in parsed.headers.raw_items() if n != "Content-Length"]
    assert got == list(Headers(fields).raw_items())


# ---------------------------------------------------------- deflate handshake


EXTENSION_HEADER_VALUES = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.tuples(
            st.sampled_from(["permessage-deflate", "x-webkit-deflate-frame", "foo"]),
            st.lists(
                st.tuples(
                    st.sampled_from(
                        [
                            "server_no_context_takeover",
                            "client_no_context_takeover",
                            "server_max_window_bits",
                            "client_max_window_bits",
                            "unknown",
                        ]
                    ),
                    st.one_of(
                        st.none(),
                        st.integers(-1, 16).map(str),
                        st.sampled_from(['"10"', '"x"', "", "1 0"]),
                    ),
                ),
                max_size=4,
            ),
        ),
        max_size=3,
    ).map(
        lambda offers: ", ".join(
            "; ".join([name] + [p if v is None else f"{p}={v}" for p, v in params])
            for name, params in offers
        )
    ),
)


@PROPERTY
@given(
    offers=st.lists(EXTENSION_HEADER_VALUES, min_size=1, max_size=2),
    server_window=st.one_of(st.none(), st.integers(8, 15)),
    client_window=st.one_of(st.none(), st.integers(8, 15)),
)
def test_deflate_negotiation_arbitrary_offers(
    offers: list[str], server_window: int | None, client_window: int | None
) -> None:
    # Whatever a client offers, the server accepts with a valid answer or
    # refuses with 400; it never raises.
    fields = [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
    try:
        headers = Headers(fields + [("Sec-WebSocket-Extensions", o) for o in offers])
    except ValueError:
        assume(False)  # not even a header value: never parsed off the wire
    handshake = ServerHandshake(
        extensions=[
            ServerPerMessageDeflateFactory(
                server_max_window_bits=server_window,
                client_max_window_bits=client_window,
            )
        ]
    )
    accepted = handshake.accept(Request("/", headers))
    assert accepted.response.status_code in (101, 400)
    if accepted.response.status_code == 400:
        assert accepted.error is not None
        return
    answer = accepted.response.headers.get("Sec-WebSocket-Extensions")
    assert (answer is None) == (not accepted.extensions)
    if answer is not None:
        assert answer.startswith("permessage-deflate")
        (extension,) = accepted.extensions
        # The extension works: a message round-trips through it.
        peer = PerMessageDeflate(
            remote_no_context_takeover=extension.local_no_context_takeover,
            local_no_context_takeover=extension.remote_no_context_takeover,
            remote_max_window_bits=extension.local_max_window_bits,
            local_max_window_bits=extension.remote_max_window_bits,
        )
        message = Frame(Opcode.TEXT, b"hello " * 100)
        assert extension.decode(peer.encode(message)).data == message.data
        assert peer.decode(extension.encode(message)).data == message.data
