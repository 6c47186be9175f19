"""Exceptions raised by wssync.

Every exception derives from :class:`WebSocketException`, so one ``except``
clause catches anything the library raises on purpose::

    WebSocketException
    ├── ConnectionClosed
    │   ├── ConnectionClosedOK
    │   └── ConnectionClosedError
    ├── InvalidHandshake
    │   ├── InvalidURI              (also a ValueError)
    │   ├── InvalidMessage
    │   ├── InvalidStatus
    │   ├── InvalidHeader
    │   │   ├── InvalidOrigin
    │   │   └── InvalidUpgrade
    │   └── NegotiationError
    ├── ProtocolError
    │   └── PayloadTooBig
    ├── InvalidState
    └── MultipleValuesError         (also a LookupError)

All of them can be pickled: each constructor hands its arguments to
``super().__init__`` so that ``cls(*exc.args)`` rebuilds an equal exception
(this matters for ``multiprocessing`` and ``concurrent.futures``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wssync.sansio.frames import Close
    from wssync.sansio.http11 import Response

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "MultipleValuesError",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "WebSocketException",
]

# Short explanations for the close codes of RFC 6455 §7.4.1 and the IANA
# registry, used only to make messages readable; the codes themselves live in
# wssync.sansio.frames.CloseCode (not imported here: exceptions must not
# depend on the protocol core at runtime).
_CLOSE_CODE_EXPLANATIONS = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received [internal]",
    1006: "abnormal closure [internal]",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure [internal]",
}


def _describe_close(close: Close) -> str:
    """Describe a close frame as ``1000 (OK) reason``."""
    if 3000 <= close.code < 4000:
        explanation = "registered"
    elif 4000 <= close.code < 5000:
        explanation = "private use"
    else:
        explanation = _CLOSE_CODE_EXPLANATIONS.get(close.code, "unknown")
    text = f"{close.code} ({explanation})"
    if close.reason:
        text = f"{text} {close.reason}"
    return text


class WebSocketException(Exception):
    """Base class for every exception raised by wssync."""


class ConnectionClosed(WebSocketException):
    """Raised when using a connection that is closed or closing.

    Args:
        rcvd: The close frame received from the peer, if any.
        sent: The close frame sent to the peer, if any.
        rcvd_then_sent: Whether the peer's close frame came first; ``None``
            unless both frames were exchanged.

    Attributes:
        rcvd: The close frame received from the peer, if any.
        sent: The close frame sent to the peer, if any.
        rcvd_then_sent: Whether the peer closed first, when both frames were
            exchanged.
    """

    def __init__(
        self,
        rcvd: Close | None,
        sent: Close | None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        super().__init__(rcvd, sent, rcvd_then_sent)
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent

    @property
    def code(self) -> int:
        """The close code received from the peer, or 1006 if none was.

        RFC 6455 §7.1.5: when no close frame was received, the connection
        close code is considered to be 1006 (abnormal closure).
        """
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self) -> str:
        """The close reason received from the peer, or ``""`` if none was."""
        return "" if self.rcvd is None else self.rcvd.reason

    def __str__(self) -> str:
        if self.rcvd is None:
            if self.sent is None:
                return "no close frame received or sent"
            return f"sent {_describe_close(self.sent)}; no close frame received"
        if self.sent is None:
            return f"received {_describe_close(self.rcvd)}; no close frame sent"
        if self.rcvd_then_sent is False:
            return (
                f"sent {_describe_close(self.sent)}; "
                f"then received {_describe_close(self.rcvd)}"
            )
        return (
            f"received {_describe_close(self.rcvd)}; "
            f"then sent {_describe_close(self.sent)}"
        )


class ConnectionClosedOK(ConnectionClosed):
    """Raised when the connection was closed normally.

    Both close frames were exchanged and carried 1000 (normal closure) or
    1001 (going away).
    """


class ConnectionClosedError(ConnectionClosed):
    """Raised when the connection was closed with an error or abnormally."""


class InvalidHandshake(WebSocketException):
    """Base class for failures of the opening handshake."""


class InvalidURI(InvalidHandshake, ValueError):
    """Raised when a WebSocket URI is not valid.

    Args:
        uri: The offending URI.
        msg: What is wrong with it.
    """

    def __init__(self, uri: str, msg: str) -> None:
        super().__init__(uri, msg)
        self.uri = uri
        self.msg = msg

    def __str__(self) -> str:
        return f"{self.uri} isn't a valid URI: {self.msg}"


class InvalidMessage(InvalidHandshake):
    """Raised when an HTTP message of the handshake is malformed or too large.

    Args:
        msg: What is wrong with the message.
        status_code: The HTTP status a server should answer with: 400 (bad
            request), 405 (method not allowed), 431 (request header fields
            too large) or 505 (HTTP version not supported).
    """

    def __init__(self, msg: str, status_code: int = 400) -> None:
        super().__init__(msg, status_code)
        self.msg = msg
        self.status_code = status_code

    def __str__(self) -> str:
        return self.msg


class InvalidStatus(InvalidHandshake):
    """Raised when the server answers the handshake with a status other than 101.

    Args:
        response: The server's HTTP response.
    """

    def __init__(self, response: Response) -> None:
        super().__init__(response)
        self.response = response

    def __str__(self) -> str:
        return (
            "server rejected WebSocket connection: "
            f"HTTP {self.response.status_code} {self.response.reason_phrase}".rstrip()
        )


class InvalidHeader(InvalidHandshake):
    """Raised when an HTTP header of the handshake is missing or invalid.

    Args:
        name: The header name.
        value: The offending value, or ``None`` if the header is missing.
    """

    def __init__(self, name: str, value: str | None = None) -> None:
        super().__init__(name, value)
        self.name = name
        self.value = value

    def __str__(self) -> str:
        if self.value is None:
            return f"missing {self.name} header"
        if self.value == "":
            return f"empty {self.name} header"
        return f"invalid {self.name} header: {self.value}"


class InvalidOrigin(InvalidHeader):
    """Raised when the Origin header of a request is not allowed.

    Args:
        origin: The offending origin, or ``None`` if the header is missing.
    """

    def __init__(self, origin: str | None) -> None:
        # Skip InvalidHeader.__init__ so that args == (origin,) and
        # InvalidOrigin(*args) rebuilds the exception when unpickling.
        WebSocketException.__init__(self, origin)
        self.name = "Origin"
        self.value = origin
        self.origin = origin


class InvalidUpgrade(InvalidHeader):
    """Raised when the Upgrade or Connection header is missing or invalid.

    Args:
        name: The header name (``Upgrade`` or ``Connection``).
        value: The offending value, or ``None`` if the header is missing.
    """


class NegotiationError(InvalidHandshake):
    """Raised when negotiating an extension or a subprotocol fails."""


class ProtocolError(WebSocketException):
    """Raised when the peer violates the WebSocket protocol."""


class PayloadTooBig(ProtocolError):
    """Raised when a message is larger than the configured ``max_size``."""


class InvalidState(WebSocketException):
    """Raised when an operation is not allowed in the current state."""


class MultipleValuesError(WebSocketException, LookupError):
    """Raised by :class:`~wssync.sansio.headers.Headers` when a header has many values.

    ``headers[name]`` returns one value; use ``headers.get_all(name)`` for a
    header that may appear several times.
    """
