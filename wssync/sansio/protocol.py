"""The WebSocket state machine (RFC 6455 §5-§7): bytes in, frames out.

:class:`Protocol` starts where the opening handshake ends. It performs no I/O:
the caller feeds it what it read from the network and sends what it produces.

A driver's loop looks like this::

    protocol.receive_data(sock.recv(65536))    # or receive_eof() on b""
    for frame in protocol.events_received():
        ...                                     # deliver messages, pongs, close
    for chunk in protocol.data_to_send():
        if chunk:
            sock.sendall(chunk)
        else:
            sock.shutdown(socket.SHUT_WR)      # b"" means "half-close (EOF)"
    if protocol.close_expected():
        ...                                     # close the socket after a timeout

Everything RFC 6455 asks of an endpoint once the connection is open happens
here: frame validation, fragmentation rules, UTF-8 validation, message size
limits, automatic pongs, the closing handshake, and turning every error into
the close code that reports it.

Receiving is incremental and linear: bytes are parsed straight from the chunk
given to :meth:`Protocol.receive_data`; only an incomplete header (at most 13
bytes) or the payload of an incomplete frame is kept, the latter as a list of
parts joined once, when the frame is complete. Feeding one byte at a time or
megabytes at once costs the same per byte.
"""

from __future__ import annotations

import codecs
import enum
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Optional, Union

from wssync.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
)
from wssync.sansio.frames import (
    Close,
    CloseCode,
    Frame,
    Opcode,
    apply_mask,
    mask_in_place,
)
from wssync.sansio.frames import masking_key as _masking_key
from wssync.sansio.frames import serialize_frame as _serialize_frame
from wssync.sansio.frames import serialize_payload as _serialize_payload

if TYPE_CHECKING:
    from wssync.sansio.extensions.base import Extension

__all__ = ["OK_CLOSE_CODES", "Protocol", "Side", "State"]

# What data to send and receive may be: the buffer types sockets accept.
BytesLike = Union[bytes, bytearray, memoryview]


class Side(enum.IntEnum):
    """Which end of the connection a :class:`Protocol` plays."""

    SERVER = 0
    CLIENT = 1


class State(enum.IntEnum):
    """The state of a WebSocket connection (RFC 6455 §4-§7)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


# Close codes that end a connection normally, for ConnectionClosedOK. 1005 is
# what an empty close frame means (RFC 6455 §7.1.5): a peer that closes without
# a status code did not report an error.
OK_CLOSE_CODES = frozenset(
    {CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD}
)

# Opcode by the value of its 4 bits; None for the reserved ones (RFC 6455 §5.2:
# 0x3-0x7 and 0xB-0xF are "reserved for further ... frames").
_OPCODES: tuple[Optional[Opcode], ...] = tuple(
    next((opcode for opcode in Opcode if opcode == value), None) for value in range(16)
)

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_CLOSE = Opcode.CLOSE
_PING = Opcode.PING
_PONG = Opcode.PONG
# close(), without arguments: made once (Close is immutable).
_NORMAL_CLOSE = Close(1000, "")
_NORMAL_CLOSE_DATA = _NORMAL_CLOSE.serialize()
# Module constants: looking an enum member up on its class costs 60 ns (3.11).
_OPEN = State.OPEN
_CLOSING = State.CLOSING

_utf8_decode = codecs.utf_8_decode

# Frame(...) goes through a Python-level __new__; tuple.__new__ builds the
# same NamedTuple in C, twice as fast, for the frames built on the hot path.
_new_frame = tuple.__new__


class _Utf8Validator:
    """Validate UTF-8 fed in pieces, failing on the first invalid byte.

    RFC 6455 §8.1: an endpoint that receives invalid UTF-8 in a text message
    MUST fail the connection; Autobahn checks that it does so as soon as the
    invalid byte arrives, even in the middle of a frame. CPython's decoder
    does that, with one exception handled below.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        # The bytes of an incomplete code point at the end of the last piece.
        self.pending = b""

    def feed(self, data: bytes, final: bool) -> None:
        """Validate the next piece; ``final`` if it ends the message.

        Raises:
            UnicodeDecodeError: The bytes seen so far are not valid UTF-8 or,
                when ``final``, end in the middle of a code point.
        """
        if self.pending:
            data = self.pending + data
        elif data.isascii():
            # ASCII is valid UTF-8; isascii() is much faster than decoding.
            return
        _, consumed = _utf8_decode(data, "strict", final)
        if consumed == len(data):
            self.pending = b""
            return
        rest = data[consumed:]
        # CPython holds back ED A0-BF as the start of a code point, but every
        # continuation would encode a UTF-16 surrogate, which RFC 3629 §3
        # forbids: reject it now instead of one byte later.
        if len(rest) >= 2 and rest[0] == 0xED and rest[1] >= 0xA0:
            raise UnicodeDecodeError(
                "utf-8", data, consumed, consumed + 2, "invalid continuation byte"
            )
        self.pending = rest


def _truncate_reason(reason: str) -> str:
    """Shorten a close reason to the 123 bytes a close frame can carry."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= 123:
        return reason
    # RFC 6455 §5.5: control frame payloads are at most 125 bytes, 2 of which
    # hold the code. Cut on a code point boundary.
    return encoded[:123].decode("utf-8", "ignore")


def _describe(frame: Frame) -> str:
    """Describe a frame for debug logs, e.g. ``TEXT 'hello' [5 bytes]``."""
    data = frame.data
    if frame.opcode is Opcode.CLOSE:
        try:
            text = str(Close.parse(data))
        except (ProtocolError, UnicodeDecodeError):
            text = data.hex()
    elif frame.opcode is Opcode.TEXT and not frame.rsv1:
        text = repr(data[:75].decode("utf-8", "replace"))
    else:
        text = data[:75].hex()
    if len(data) > 75:
        text += "..."
    flags = "" if frame.fin else " [continued]"
    if frame.rsv1 or frame.rsv2 or frame.rsv3:
        flags += f" [rsv={int(frame.rsv1)}{int(frame.rsv2)}{int(frame.rsv3)}]"
    return f"{frame.opcode.name} {text} [{len(data)} bytes]{flags}"


class Protocol:
    """Sans-I/O WebSocket connection, from the end of the opening handshake on.

    Args:
        side: Whether this end is the client or the server; the client masks
            the frames it sends and the server requires masked frames.
        extensions: The extensions negotiated in the handshake, in order.
        max_size: Largest incoming message, in bytes, after decoding by
            extensions; ``None`` for no limit. A bigger one fails the
            connection with close code 1009.
        logger: Where to log frames at debug level; defaults to
            ``wssync.client`` or ``wssync.server``.

    Attributes:
        side: As given.
        state: :class:`State`; starts at ``OPEN``.
        extensions: As given.
        max_size: As given.
        logger: The logger in use.
        debug: Whether the logger was enabled for debug messages when the
            protocol was created: checked once because frames are logged on
            the hot path.
        close_rcvd: The close frame received, if any.
        close_sent: The close frame sent, if any.
        close_rcvd_then_sent: Once both close frames were exchanged, whether
            the peer's came first; else ``None``.
        eof_sent: Whether the end of the stream was queued for sending.
        failure: The exception that made the protocol fail the connection,
            if one did.
    """

    # A connection holds one for its lifetime: slots keep it small (about
    # 1.2 KiB less than an instance dictionary this size).
    __slots__ = (
        "_collecting",
        "_cur_first",
        "_cur_key",
        "_cur_length",
        "_cur_opcode",
        "_cur_payload",
        "_cur_validate",
        "_discard",
        "_eof_rcvd",
        "_events",
        "_head",
        "_mask",
        "_mask_bit_expected",
        "_msg_opcode",
        "_msg_rsv",
        "_msg_size",
        "_output",
        "_pending",
        "_send_fragmented",
        "_utf8",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "debug",
        "eof_sent",
        "extensions",
        "failure",
        "logger",
        "max_size",
        "side",
        "state",
    )

    def __init__(
        self,
        side: Side,
        *,
        extensions: Sequence[Extension] = (),
        max_size: int | None = 2**20,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.side = side
        self.state = State.OPEN
        self.extensions = list(extensions)
        self.max_size = max_size
        if logger is None:
            logger = logging.getLogger(
                "wssync.client" if side is Side.CLIENT else "wssync.server"
            )
        self.logger = logger
        self.debug = logger.isEnabledFor(logging.DEBUG)

        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        self.eof_sent = False
        self.failure: BaseException | None = None

        # RFC 6455 §5.1: a client MUST mask every frame it sends; a server
        # MUST NOT mask, and each side fails the connection on a frame masked
        # the wrong way.
        self._mask = side is Side.CLIENT
        self._mask_bit_expected = 0x80 if side is Side.SERVER else 0

        self._events: list[Frame] = []
        self._output: list[bytes | bytearray] = []
        # Once set, incoming bytes are ignored: after a close frame, after
        # failing the connection (RFC 6455 §7.1.7) and after the end of stream.
        self._discard = False
        self._eof_rcvd = False
        # An error waiting for data_to_send() to fail the connection: the
        # exception, the close code and the reason.
        self._pending: tuple[BaseException, int, str] | None = None

        # Parser state between calls to receive_data().
        # The start of a frame whose header is incomplete.
        self._head = b""
        # The frame whose payload is incomplete: its first header byte, its
        # opcode, length and masking key, and the payload received so far,
        # already unmasked.
        self._collecting = False
        self._cur_first = 0
        self._cur_opcode = Opcode.CONT
        self._cur_length = 0
        self._cur_key: bytes | None = None
        self._cur_payload = bytearray()
        self._cur_validate = False

        # The incoming message in progress (RFC 6455 §5.4): its opcode (TEXT
        # or BINARY; None between messages), its size after decoding, whether
        # its first frame had RSV bits set (then extensions transform it) and
        # the UTF-8 validator of a fragmented text message.
        self._msg_opcode: Opcode | None = None
        self._msg_size = 0
        self._msg_rsv = False
        self._utf8: _Utf8Validator | None = None

        # Whether we're in the middle of sending a fragmented message.
        self._send_fragmented = False

    # --- state ---------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The WebSocket connection close code (RFC 6455 §7.1.5).

        ``None`` until the connection is closed; then the code of the close
        frame received, or 1006 (abnormal closure) if none was.
        """
        if self.state is not State.CLOSED:
            return None
        if self.close_rcvd is None:
            return int(CloseCode.ABNORMAL_CLOSURE)
        return self.close_rcvd.code

    @property
    def close_reason(self) -> str | None:
        """The WebSocket connection close reason (RFC 6455 §7.1.6).

        ``None`` until the connection is closed; then the reason of the close
        frame received, or ``""`` if none was.
        """
        if self.state is not State.CLOSED:
            return None
        if self.close_rcvd is None:
            return ""
        return self.close_rcvd.reason

    def close_exc(self) -> ConnectionClosed:
        """Build the exception describing how the connection closed.

        Returns:
            :exc:`ConnectionClosedOK` if both close frames were exchanged with
            codes 1000, 1001 or 1005; :exc:`ConnectionClosedError` otherwise.
            Its ``__cause__`` is :attr:`failure`, if set.
        """
        rcvd, sent = self.close_rcvd, self.close_sent
        exc_type: type[ConnectionClosed]
        if (
            rcvd is not None
            and sent is not None
            and rcvd.code in OK_CLOSE_CODES
            and sent.code in OK_CLOSE_CODES
        ):
            exc_type = ConnectionClosedOK
        else:
            exc_type = ConnectionClosedError
        exc = exc_type(rcvd, sent, self.close_rcvd_then_sent)
        if self.failure is not None:
            exc.__cause__ = self.failure
        return exc

    @property
    def pending_failure(self) -> BaseException | None:
        """An error whose failure waits for the next :meth:`data_to_send`.

        See :meth:`receive_data`. A driver that hands messages to other
        threads may hold off calling :meth:`data_to_send` while this is set,
        until the application has taken the messages received before the
        error (within a bounded time), to let it answer them.
        """
        return None if self._pending is None else self._pending[0]

    def close_expected(self) -> bool:
        """Tell whether the TCP connection is expected to close soon.

        Call it after :meth:`receive_data`, :meth:`receive_eof`,
        :meth:`send_close` or :meth:`fail`. When it returns ``True``, close
        the TCP connection after a timeout if the peer doesn't: the closing
        handshake is under way or the connection was failed.
        """
        return self.state is _CLOSING

    # --- input ---------------------------------------------------------------

    def receive_data(self, data: BytesLike) -> None:
        """Feed bytes received from the network.

        Then call :meth:`events_received` and :meth:`data_to_send`: frames
        may have arrived, and pongs, close frames or the end of stream may be
        due. Errors don't raise: they fail the connection with the close code
        that reports them, and :attr:`failure` keeps the exception.

        When the error comes after data frames received in the same call and
        not yet collected, failing waits for the next :meth:`data_to_send`
        (or :meth:`receive_eof`), so that the application can still answer
        the messages that arrived before the error: the peer's valid messages
        get their reply before the close frame, as Autobahn's cases 3.2-5.15
        expect. Until then :attr:`pending_failure` holds the exception, the
        state stays OPEN and input is ignored.

        Args:
            data: Bytes read from the socket. Nothing keeps a reference to
                it after the call: the caller may reuse its buffer.
        """
        if self._discard:
            return
        try:
            self._parse(data)
        except PayloadTooBig as exc:
            self._fail_with(exc, CloseCode.MESSAGE_TOO_BIG, str(exc))
        except ProtocolError as exc:
            self._fail_with(exc, CloseCode.PROTOCOL_ERROR, str(exc))
        except UnicodeDecodeError as exc:
            # RFC 6455 §8.1: invalid UTF-8 in a text message or a close reason.
            self._fail_with(exc, CloseCode.INVALID_DATA, "invalid UTF-8")
        except Exception as exc:
            # A bug, or an extension that broke: RFC 6455 §7.4.1 1011,
            # "an unexpected condition that prevented it from fulfilling the
            # request".
            self._fail_with(exc, CloseCode.INTERNAL_ERROR, "internal error")

    def receive_eof(self) -> None:
        """Tell the protocol the peer closed its side of the TCP connection.

        The connection is CLOSED afterwards; abnormally (1006) unless a close
        frame was received first. If the end of the stream wasn't sent yet,
        it's queued: :meth:`data_to_send` returns ``b""``.
        """
        if self._eof_rcvd:
            return
        if self._pending is not None:
            self._apply_pending_failure()
        self._eof_rcvd = True
        self._stop_parsing()
        self.state = State.CLOSED
        if self.debug:
            self.logger.debug("< EOF")
        if not self.eof_sent:
            self._send_eof()

    def events_received(self) -> list[Frame]:
        """Return the frames received since the last call, and forget them.

        Data frames come one per fragment, after decoding by extensions (RSV
        bits cleared); text ones were validated as UTF-8 and carry bytes.
        Control frames (ping, pong, close) are reported too; pings are
        answered automatically.
        """
        events = self._events
        self._events = []
        return events

    # --- output --------------------------------------------------------------

    def send_text(self, data: BytesLike, fin: bool = True) -> None:
        """Send a text frame: a message, or the first fragment of one.

        Args:
            data: The text, already encoded to UTF-8 (not validated).
            fin: ``False`` to send the rest with :meth:`send_continuation`.

        Raises:
            InvalidState: The connection isn't OPEN.
            ProtocolError: A fragmented message is in progress.
        """
        if self.state is not _OPEN or self._send_fragmented:
            self._refuse_data_frame(continuation=False)
        self._send_fragmented = not fin
        self._send_data(_TEXT, data, fin)

    def send_binary(self, data: BytesLike, fin: bool = True) -> None:
        """Send a binary frame: a message, or the first fragment of one.

        Args:
            data: The payload (copied if not ``bytes``).
            fin: ``False`` to send the rest with :meth:`send_continuation`.

        Raises:
            InvalidState: The connection isn't OPEN.
            ProtocolError: A fragmented message is in progress.
        """
        if self.state is not _OPEN or self._send_fragmented:
            self._refuse_data_frame(continuation=False)
        self._send_fragmented = not fin
        self._send_data(_BINARY, data, fin)

    def send_continuation(self, data: BytesLike, fin: bool) -> None:
        """Send the next fragment of a message.

        Args:
            data: The payload (UTF-8 bytes for a text message).
            fin: Whether this fragment ends the message.

        Raises:
            InvalidState: The connection isn't OPEN.
            ProtocolError: No fragmented message is in progress.
        """
        if self.state is not _OPEN or not self._send_fragmented:
            self._refuse_data_frame(continuation=True)
        self._send_fragmented = not fin
        self._send_data(_CONT, data, fin)

    def send_close(self, code: int | None = None, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 §7.1.2).

        The state becomes CLOSING; the protocol then waits for the peer's
        close frame and the end of the TCP connection.

        Args:
            code: The close code; ``None`` sends a close frame without body.
            reason: The close reason, at most 123 bytes once UTF-8 encoded;
                requires a code.

        Raises:
            InvalidState: The connection isn't OPEN.
            ProtocolError: The code can't be sent, or the reason is too long
                or given without a code.
        """
        self._check_open()
        if code is None:
            if reason:
                raise ProtocolError("a close reason requires a close code")
            code = CloseCode.NO_STATUS_RCVD
        if code == 1000 and not reason:
            close, data = _NORMAL_CLOSE, _NORMAL_CLOSE_DATA  # the usual one
        else:
            close = Close(int(code), reason)
            data = close.serialize()
        self._send_frame(Frame(_CLOSE, data))
        self.close_sent = close
        self.state = State.CLOSING

    def send_ping(self, data: BytesLike) -> None:
        """Send a ping frame.

        Args:
            data: The payload, at most 125 bytes (RFC 6455 §5.5).

        Raises:
            InvalidState: The connection isn't OPEN.
            ProtocolError: The payload is too long.
        """
        self._send_control(_PING, data)

    def send_pong(self, data: BytesLike) -> None:
        """Send a pong frame (pings are answered automatically).

        Args:
            data: The payload, at most 125 bytes (RFC 6455 §5.5).

        Raises:
            InvalidState: The connection isn't OPEN.
            ProtocolError: The payload is too long.
        """
        self._send_control(_PONG, data)

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the WebSocket connection (RFC 6455 §7.1.7).

        If the connection is OPEN, a close frame with ``code`` is sent (none
        for 1006, abnormal closure) and the state becomes CLOSING. The server
        then closes the TCP connection at once (the end of stream is queued);
        the client waits for the server to do so (RFC 6455 §7.1.1), except
        with code 1006. From now on incoming bytes are ignored: §7.1.7 says
        the endpoint "MUST NOT continue to attempt to process data (including
        a responding Close frame)".

        Args:
            code: The close code: 1006, or a code allowed in a close frame.
            reason: The close reason; truncated to 123 bytes if longer.

        Raises:
            ProtocolError: ``code`` can't be sent in a close frame.
        """
        self._pending = None
        if self.state is State.OPEN:
            if code != CloseCode.ABNORMAL_CLOSURE:
                close = Close(int(code), _truncate_reason(reason))
                data = close.serialize()
                self._send_frame(Frame(_CLOSE, data))
                self.close_sent = close
            self.state = State.CLOSING
        # RFC 6455 §7.1.1: "the server SHOULD close the underlying TCP
        # connection first". Without a close frame there is no handshake to
        # wait for, so then the client closes too.
        if (
            self.state is State.CLOSING
            and not self.eof_sent
            and (self.side is Side.SERVER or code == CloseCode.ABNORMAL_CLOSURE)
        ):
            self._send_eof()
        self._stop_parsing()

    def data_to_send(self) -> list[bytes | bytearray]:
        """Return the bytes to send since the last call, and forget them.

        Returns:
            Chunks to write in order. ``b""`` means "close the write side of
            the connection" (shutdown(SHUT_WR) or close the socket): it is the
            last chunk.
        """
        if self._pending is not None:
            self._apply_pending_failure()
        output = self._output
        self._output = []
        return output

    # --- sending internals -----------------------------------------------------

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            # RFC 6455 §5.5.1: "the application MUST NOT send any more data
            # frames after sending a Close frame".
            raise InvalidState(f"connection is {self.state.name}")

    def _refuse_data_frame(self, *, continuation: bool) -> NoReturn:
        self._check_open()
        # RFC 6455 §5.4: the fragments of a message are not interleaved with
        # other messages.
        if continuation:
            raise ProtocolError("unexpected continuation frame")
        raise ProtocolError("expected a continuation frame")

    def _send_control(self, opcode: Opcode, data: BytesLike) -> None:
        self._check_open()
        if len(data) > 125:
            # RFC 6455 §5.5: "All control frames MUST have a payload length of
            # 125 bytes or less".
            raise ProtocolError("control frame payload is longer than 125 bytes")
        self._send_frame(Frame(opcode, bytes(data)))

    def _send_data(self, opcode: Opcode, data: BytesLike, fin: bool) -> None:
        if type(data) is not bytes:
            # The frame may wait in the output after the call returns: don't
            # keep a reference to a buffer the caller may change.
            data = bytes(data)
        if self.extensions or self.debug:
            frame = _new_frame(Frame, (opcode, data, fin, False, False, False))
            # RFC 6455 §9.1: extensions apply in the order they were negotiated.
            for extension in self.extensions:
                frame = extension.encode(frame)
            self._send_frame(frame)
        else:
            # The common case, without a Frame: one call to serialize it.
            key = _masking_key() if self._mask else None
            self._output += _serialize_payload(
                opcode | 0x80 if fin else opcode, data, key
            )

    def _send_frame(self, frame: Frame) -> None:
        if self.debug:
            self.logger.debug("> %s", _describe(frame))
        if self._mask:
            self._output += _serialize_frame(frame, mask=True, key=_masking_key())
        else:
            self._output += _serialize_frame(frame, mask=False)

    def _send_eof(self) -> None:
        if self.debug:
            self.logger.debug("> EOF")
        self._output.append(b"")
        self.eof_sent = True

    # --- receiving internals ---------------------------------------------------

    def _fail_with(self, exc: BaseException, code: int, reason: str) -> None:
        if any(event.opcode < 8 for event in self._events):
            # Messages that came before the error wait to be collected: let
            # the application answer them first (see receive_data()).
            self._pending = (exc, code, reason)
            self._stop_parsing()
            return
        if self.debug:
            self.logger.debug("! failing connection: %s", exc, exc_info=True)
        if self.failure is None:
            self.failure = exc
        self.fail(code, reason)

    def _apply_pending_failure(self) -> None:
        assert self._pending is not None
        exc, code, reason = self._pending
        self._pending = None
        if self.debug:
            self.logger.debug("! failing connection: %s", exc, exc_info=True)
        if self.failure is None:
            self.failure = exc
        self.fail(code, reason)

    def _stop_parsing(self) -> None:
        self._discard = True
        self._head = b""
        self._collecting = False
        self._cur_payload = bytearray()

    def _parse(self, received: BytesLike) -> None:
        """Parse as many frames as ``received`` completes."""
        if self._collecting:
            # The rest of a big payload is copied once, straight from the
            # caller's buffer into the payload's.
            used = self._collect(received)
            if self._collecting or self._discard:
                return
            received = memoryview(received)[used:]
        # Copied: the caller may reuse its buffer.
        data = received if type(received) is bytes else bytes(received)
        if self._head:
            data = self._head + data
            self._head = b""
        pos = 0
        size = len(data)
        mask_bit_expected = self._mask_bit_expected
        max_size = self.max_size
        # Whole binary and ASCII text messages in one frame are the common
        # case: without extensions or logging, they become events here.
        plain = not (self.extensions or self.debug)
        events = self._events

        while size - pos >= 2:
            first = data[pos]
            second = data[pos + 1]

            # Check what the first two bytes tell before waiting for more:
            # failing fast also spares buffering a frame that will be refused.
            opcode = _OPCODES[first & 0x0F]
            if opcode is None:
                # RFC 6455 §5.2: "If an unknown opcode is received, the
                # receiving endpoint MUST _Fail the WebSocket Connection_".
                raise ProtocolError(f"invalid opcode {first & 0x0F:#x}")
            if second & 0x80 != mask_bit_expected:
                # RFC 6455 §5.1: "A server MUST close the connection upon
                # receiving a frame that is not masked"; "A client MUST close
                # a connection if it detects a masked frame".
                if mask_bit_expected:
                    raise ProtocolError("incorrect masking: frame isn't masked")
                raise ProtocolError("incorrect masking: frame is masked")
            rsv = first & 0x70
            if opcode >= 8:
                # RFC 6455 §5.5: control frames.
                if first < 0x80:
                    # §5.5: "Control frames MUST NOT be fragmented".
                    raise ProtocolError("fragmented control frame")
                if second & 0x7F > 125:
                    # §5.5: "All control frames MUST have a payload length of
                    # 125 bytes or less".
                    raise ProtocolError("control frame is longer than 125 bytes")
                if rsv:
                    # §5.2: RSV bits MUST be 0 unless an extension defines
                    # them; none defines them for control frames (RFC 7692
                    # §6: "MUST NOT set the 'Per-Message Compressed' bit of
                    # control frames").
                    raise ProtocolError("reserved bits set on a control frame")
            else:
                # RFC 6455 §5.4: fragmentation.
                if opcode is _CONT:
                    if self._msg_opcode is None:
                        raise ProtocolError("continuation frame without a message")
                elif self._msg_opcode is not None:
                    raise ProtocolError("new data frame in a fragmented message")
                if rsv and not self.extensions:
                    # §5.2: "If a nonzero value is received and none of the
                    # negotiated extensions defines the meaning of such a
                    # nonzero value, the receiving endpoint MUST _Fail_".
                    raise ProtocolError("reserved bits set without extensions")

            length = second & 0x7F
            if length < 126:
                header_length = 2
            elif length == 126:
                header_length = 4
                if size - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
            else:
                header_length = 10
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                if length >> 63:
                    # §5.2: "the most significant bit MUST be 0".
                    raise ProtocolError("payload length with its top bit set")
            # §5.2 also wants the minimal length encoding; that binds the
            # sender, and refusing other encodings would gain nothing.

            if (
                opcode < 8
                and max_size is not None
                and length > max_size - self._msg_size
            ):
                # Refuse an oversized frame from its header, before buffering
                # it: RFC 6455 §10.4 "implementations SHOULD impose a limit".
                budget = max_size - self._msg_size
                transformed = (
                    (rsv != 0) if opcode is not _CONT else self._msg_rsv
                ) and self.extensions
                # Extensions (compression) may make a frame slightly bigger
                # than what it decodes to; the exact limit applies after
                # decoding, this one bounds memory.
                if not transformed or length > budget + (budget >> 3) + 256:
                    raise PayloadTooBig(
                        f"message over size limit ({self._msg_size + length} "
                        f"> {max_size} bytes)"
                    )

            if second & 0x80:
                key: bytes | None = data[pos + header_length : pos + header_length + 4]
                header_length += 4
            else:
                key = None
            start = pos + header_length
            if start > size:
                break
            end = start + length
            if end > size:
                # The payload is incomplete: collect it over the next calls.
                self._start_collecting(
                    first, opcode, length, key, memoryview(data)[start:]
                )
                return
            if key is None:
                payload = data[start:end]
            elif length > 4096:
                payload = apply_mask(memoryview(data)[start:end], key)
            else:
                payload = apply_mask(data[start:end], key)
            pos = end
            if plain and (first == 0x82 or (first == 0x81 and payload.isascii())):
                # What _handle_frame() would do: the header is checked, and
                # such a message leaves no state behind.
                events.append(
                    _new_frame(Frame, (opcode, payload, True, False, False, False))
                )
                continue
            self._handle_frame(first, opcode, payload, False)
            if self._discard:
                return

        if pos < size:
            self._head = data[pos:]

    def _start_collecting(
        self,
        first: int,
        opcode: Opcode,
        length: int,
        key: bytes | None,
        part: BytesLike,
    ) -> None:
        self._collecting = True
        self._cur_first = first
        self._cur_opcode = opcode
        self._cur_length = length
        self._cur_key = key
        self._cur_payload = bytearray()
        # Validate the UTF-8 of a text frame as it arrives, to fail as soon
        # as an invalid byte shows up (Autobahn 6.4.3, 6.4.4). Not when RSV
        # bits are set: then an extension transforms the payload first.
        if opcode is _TEXT:
            validate = not first & 0x70
        elif opcode is _CONT:
            validate = self._msg_opcode is _TEXT and not self._msg_rsv
        else:
            validate = False
        if validate and self._utf8 is None:
            self._utf8 = _Utf8Validator()
        self._cur_validate = validate
        if part:
            self._add_part(part)

    def _add_part(self, part: BytesLike) -> None:
        # The payload grows as it arrives (never allocated from the length
        # the peer announced, which may never come) and is unmasked in
        # place: one copy of each byte, and no list of parts to join.
        payload = self._cur_payload
        start = len(payload)
        payload += part
        if self._cur_key is not None:
            mask_in_place(payload, self._cur_key, start, start)
        if self._cur_validate:
            assert self._utf8 is not None
            self._utf8.feed(bytes(memoryview(payload)[start:]), False)

    def _collect(self, data: BytesLike) -> int:
        """Add to the incomplete frame; return how many bytes were used."""
        missing = self._cur_length - len(self._cur_payload)
        if len(data) < missing:
            self._add_part(data)
            return len(data)
        self._add_part(memoryview(data)[:missing] if len(data) > missing else data)
        self._collecting = False
        payload = bytes(self._cur_payload)
        self._cur_payload = bytearray()
        validated = self._cur_validate
        if validated and self._cur_first & 0x80:
            # The message ends with this frame: it must not end in the middle
            # of a code point.
            assert self._utf8 is not None
            self._utf8.feed(b"", True)
        self._handle_frame(self._cur_first, self._cur_opcode, payload, validated)
        return missing

    def _handle_frame(
        self, first: int, opcode: Opcode, payload: bytes, validated: bool
    ) -> None:
        """Process a complete frame whose header was checked."""
        fin = first >= 0x80
        if opcode < 8:
            rsv = first & 0x70
            if rsv:
                frame = Frame(
                    opcode,
                    payload,
                    fin,
                    rsv & 0x40 != 0,
                    rsv & 0x20 != 0,
                    rsv & 0x10 != 0,
                )
            else:
                frame = _new_frame(Frame, (opcode, payload, fin, False, False, False))
            extensions = self.extensions
            if extensions:
                max_size = self.max_size
                budget = None if max_size is None else max_size - self._msg_size
                # RFC 6455 §9.1: decode in the reverse order of encoding.
                for extension in reversed(extensions):
                    frame = extension.decode(frame, max_size=budget)
                if frame.rsv1 or frame.rsv2 or frame.rsv3:
                    # RFC 6455 §5.2: no extension took care of these bits.
                    raise ProtocolError("reserved bits set")
                if budget is not None and len(frame.data) > budget:
                    raise PayloadTooBig(
                        f"message over size limit "
                        f"({self._msg_size + len(frame.data)} > {max_size} bytes)"
                    )
            # Without extensions, the check of the header was exact.

            if opcode is _BINARY:
                text = False
            elif opcode is _TEXT:
                text = True
            else:
                text = self._msg_opcode is _TEXT
            if text and not validated:
                # RFC 6455 §8.1: text messages MUST be valid UTF-8.
                validator = self._utf8
                if validator is not None:
                    validator.feed(frame.data, fin)
                elif fin:
                    # A whole message in one frame: the fastest check.
                    data = frame.data
                    if not data.isascii():
                        data.decode("utf-8")
                else:
                    validator = self._utf8 = _Utf8Validator()
                    validator.feed(frame.data, False)

            if not fin:
                if opcode is not _CONT:
                    self._msg_opcode = opcode
                    self._msg_rsv = rsv != 0
                self._msg_size += len(frame.data)
            elif opcode is _CONT or validated:
                # The end of a fragmented message, or of a text frame that
                # was validated while it arrived: forget the message. (A
                # message in a single frame leaves nothing to forget.)
                self._msg_opcode = None
                self._msg_size = 0
                self._msg_rsv = False
                self._utf8 = None
            if self.debug:
                self.logger.debug("< %s", _describe(frame))
            self._events.append(frame)
            return

        frame = Frame(opcode, payload)
        if self.debug:
            self.logger.debug("< %s", _describe(frame))
        if opcode is _PING:
            self._events.append(frame)
            # RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint
            # MUST send a Pong frame in response ... the same Application
            # data". Not after our close frame (§5.5.1).
            if self.state is State.OPEN:
                self._send_frame(Frame(_PONG, payload))
        elif opcode is _PONG:
            self._events.append(frame)
        else:
            self._receive_close(frame)

    def _receive_close(self, frame: Frame) -> None:
        # A bad code raises ProtocolError (1002), a bad reason
        # UnicodeDecodeError (1007).
        close = Close.parse(frame.data)
        self._events.append(frame)
        self.close_rcvd = close
        if self.state is State.OPEN:
            # RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did
            # not previously send a Close frame, the endpoint MUST send a
            # Close frame in response ... typically echos the status code it
            # received". An empty close frame gets an empty one.
            echo = Close(close.code, "")
            self._send_frame(Frame(_CLOSE, echo.serialize()))
            self.close_sent = echo
            self.close_rcvd_then_sent = True
            self.state = State.CLOSING
        else:
            self.close_rcvd_then_sent = False
        # RFC 6455 §7.1.1: "the server SHOULD close the underlying TCP
        # connection first"; the client waits for it.
        if self.side is Side.SERVER and not self.eof_sent:
            self._send_eof()
        # RFC 6455 §5.5.1: the peer MUST NOT send data frames after its close
        # frame: nothing after it is meaningful.
        self._stop_parsing()
