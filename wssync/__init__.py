"""wssync: WebSocket client and server for Python code without an event loop.

Blocking sockets and threads, RFC 6455 and RFC 7692. Everything public is
re-exported here; the documentation's reference describes each name.
"""

from __future__ import annotations

from .client import ClientConnection, connect, reconnect, unix_connect
from .connection import Connection, broadcast
from .exceptions import (
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
from .sansio.headers import Headers
from .sansio.http11 import Request, Response
from .sansio.protocol import State
from .server import ServerConnection, ThreadingServer, basic_auth, serve, unix_serve
from .version import __version__

__all__ = [
    "ClientConnection",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Headers",
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
    "Request",
    "Response",
    "ServerConnection",
    "State",
    "ThreadingServer",
    "WebSocketException",
    "__version__",
    "basic_auth",
    "broadcast",
    "connect",
    "reconnect",
    "serve",
    "unix_connect",
    "unix_serve",
]
