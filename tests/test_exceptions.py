"""Tests for wssync.exceptions: the tree, the attributes, the messages, pickling."""

from __future__ import annotations

import pickle

import pytest

from wssync.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    MultipleValuesError,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    WebSocketException,
)
from wssync.sansio.frames import Close
from wssync.sansio.headers import Headers
from wssync.sansio.http11 import Response

TREE = [
    (ConnectionClosed, WebSocketException),
    (ConnectionClosedOK, ConnectionClosed),
    (ConnectionClosedError, ConnectionClosed),
    (InvalidHandshake, WebSocketException),
    (InvalidURI, InvalidHandshake),
    (InvalidURI, ValueError),
    (InvalidMessage, InvalidHandshake),
    (InvalidStatus, InvalidHandshake),
    (InvalidHeader, InvalidHandshake),
    (InvalidOrigin, InvalidHeader),
    (InvalidUpgrade, InvalidHeader),
    (NegotiationError, InvalidHandshake),
    (ProtocolError, WebSocketException),
    (PayloadTooBig, ProtocolError),
    (InvalidState, WebSocketException),
    (MultipleValuesError, WebSocketException),
    (MultipleValuesError, LookupError),
    (WebSocketException, Exception),
]


@pytest.mark.parametrize(("cls", "base"), TREE)
def test_tree(cls: type[BaseException], base: type[BaseException]) -> None:
    assert issubclass(cls, base)


def test_docstring_draws_every_exception() -> None:
    import wssync.exceptions as module

    assert module.__doc__ is not None
    for name in module.__all__:
        assert name in module.__doc__


def test_lookup_error_is_not_key_error() -> None:
    # Mapping.get() swallows KeyError only: several values must not look
    # like a missing header.
    assert not issubclass(MultipleValuesError, KeyError)


def test_connection_closed_uses_received_close() -> None:
    exc = ConnectionClosedOK(Close(1001, "bye"), Close(1001, "bye"), True)
    assert exc.code == 1001
    assert exc.reason == "bye"
    assert exc.rcvd == Close(1001, "bye")
    assert exc.sent == Close(1001, "bye")
    assert exc.rcvd_then_sent is True
    assert str(exc) == "received 1001 (going away) bye; then sent 1001 (going away) bye"


def test_connection_closed_without_received_close_is_1006() -> None:
    exc = ConnectionClosedError(None, Close(1000, ""))
    assert exc.code == 1006
    assert exc.reason == ""
    assert exc.rcvd_then_sent is None
    assert str(exc) == "sent 1000 (OK); no close frame received"


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (ConnectionClosedError(None, None), "no close frame received or sent"),
        (
            ConnectionClosedError(Close(1002, ""), None),
            "received 1002 (protocol error); no close frame sent",
        ),
        (
            ConnectionClosedOK(Close(1000, ""), Close(1000, "done"), False),
            "sent 1000 (OK) done; then received 1000 (OK)",
        ),
        (
            ConnectionClosedError(Close(3001, ""), Close(3001, ""), True),
            "received 3001 (registered); then sent 3001 (registered)",
        ),
        (
            ConnectionClosedError(Close(4000, "x"), Close(4000, "x"), True),
            "received 4000 (private use) x; then sent 4000 (private use) x",
        ),
        (
            ConnectionClosedError(Close(2999, ""), None),
            "received 2999 (unknown); no close frame sent",
        ),
    ],
)
def test_connection_closed_str(exc: ConnectionClosed, message: str) -> None:
    assert str(exc) == message


def test_invalid_uri() -> None:
    exc = InvalidURI("http://x", "scheme isn't ws or wss")
    assert exc.uri == "http://x"
    assert exc.msg == "scheme isn't ws or wss"
    assert str(exc) == "http://x isn't a valid URI: scheme isn't ws or wss"
    with pytest.raises(ValueError):
        raise exc


def test_invalid_message_status_code() -> None:
    assert InvalidMessage("bad").status_code == 400
    exc = InvalidMessage("too big", 431)
    assert exc.status_code == 431
    assert str(exc) == "too big"


def test_invalid_status() -> None:
    response = Response(404, "Not Found", Headers(), b"nope")
    exc = InvalidStatus(response)
    assert exc.response is response
    assert str(exc) == "server rejected WebSocket connection: HTTP 404 Not Found"


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (InvalidHeader("Sec-WebSocket-Key"), "missing Sec-WebSocket-Key header"),
        (InvalidHeader("Upgrade", ""), "empty Upgrade header"),
        (InvalidHeader("Upgrade", "h2c"), "invalid Upgrade header: h2c"),
        (InvalidUpgrade("Connection", "close"), "invalid Connection header: close"),
        (InvalidOrigin("https://evil"), "invalid Origin header: https://evil"),
        (InvalidOrigin(None), "missing Origin header"),
    ],
)
def test_invalid_header_str(exc: InvalidHeader, message: str) -> None:
    assert str(exc) == message


def test_invalid_origin_attributes() -> None:
    exc = InvalidOrigin("https://evil")
    assert exc.name == "Origin"
    assert exc.value == exc.origin == "https://evil"


PICKLABLE = [
    ConnectionClosedOK(Close(1000, "ok"), Close(1000, "ok"), True),
    ConnectionClosedError(None, None),
    InvalidHandshake("x"),
    InvalidURI("ws://", "no host"),
    InvalidMessage("too big", 431),
    InvalidStatus(Response(403, "Forbidden", Headers({"A": "b"}), b"no")),
    InvalidHeader("Host"),
    InvalidHeader("Upgrade", "h2c"),
    InvalidOrigin("https://evil"),
    InvalidOrigin(None),
    InvalidUpgrade("Connection", "close"),
    NegotiationError("no"),
    ProtocolError("bad frame"),
    PayloadTooBig("too big"),
    InvalidState("closed"),
    MultipleValuesError("Cookie"),
]


@pytest.mark.parametrize("exc", PICKLABLE, ids=lambda exc: type(exc).__name__)
def test_pickle_round_trip(exc: Exception) -> None:
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is type(exc)
    assert copy.args == exc.args
    assert str(copy) == str(exc)
    assert vars(copy) == vars(exc)
