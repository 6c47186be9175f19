"""The client: :func:`connect` and :func:`unix_connect`."""

from __future__ import annotations

import logging
import os
import random
import socket
import ssl as ssl_module
import sys
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, Union

from .connection import Connection
from .exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI
from .proxy import ProxyOption, open_tunnel, proxy_for
from .sansio.extensions.base import ClientExtensionFactory, Extension
from .sansio.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from .sansio.handshake import USER_AGENT, ClientHandshake
from .sansio.headers import HeadersLike
from .sansio.http11 import Response, ResponseParser
from .sansio.protocol import Protocol, Side
from .sansio.uri import WebSocketURI, parse_uri
from .waiting import finish_connect, recv_by, send_all_by, start_connect, time_left

__all__ = ["ClientConnection", "connect", "reconnect", "unix_connect"]

# What a time-out interrupted, for its message.
_OPENING = "during the opening handshake"

#: Redirects followed before giving up, as browsers and requests do (they
#: allow 20 and 30); a WebSocket endpoint rarely needs more than one.
MAX_REDIRECTS = 10

_logger = logging.getLogger("wssync.client")

#: Bytes read per system call while waiting for the handshake response.
HANDSHAKE_READ_SIZE = 4096

_REDIRECTS = {301, 302, 303, 307, 308}

SSLOption = Union[ssl_module.SSLContext, bool, None]


class ClientConnection(Connection):
    """A connection opened by :func:`connect`."""


def connect(
    uri: str,
    *,
    sock: socket.socket | None = None,
    ssl: SSLOption = None,
    server_hostname: str | None = None,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    additional_headers: HeadersLike | None = None,
    user_agent_header: str | None = USER_AGENT,
    compression: str | None = "deflate",
    extensions: Sequence[ClientExtensionFactory] | None = None,
    proxy: ProxyOption = True,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    write_timeout: float | None = None,
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    logger: logging.Logger | None = None,
    unix_path: str | os.PathLike[str] | None = None,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri``.

    Use the result as a context manager to close it, or call ``close()``::

        with wssync.connect("ws://localhost:8765") as ws:
            ws.send("Hello world!")
            print(ws.recv())

    Args:
        uri: ``ws://`` or ``wss://`` URI.
        sock: An already connected socket to use instead of opening one.
        ssl: An :class:`ssl.SSLContext` for ``wss://``; by default (or with
            ``True``), :func:`ssl.create_default_context` verifies the
            server's certificate.
        server_hostname: Host name for SNI and certificate verification,
            instead of the URI's.
        origin: ``Origin`` header to send.
        subprotocols: Subprotocols to offer, by order of preference.
        additional_headers: Extra request headers.
        user_agent_header: ``User-Agent`` header value; ``None`` leaves it out.
        compression: ``"deflate"`` offers permessage-deflate; ``None`` doesn't.
        extensions: Extension factories to use instead of ``compression``'s.
        proxy: ``True`` uses the proxy that ``HTTPS_PROXY`` (for ``wss://``),
            ``HTTP_PROXY`` (for ``ws://``) or ``ALL_PROXY`` name, unless
            ``NO_PROXY`` matches the host; a ``http://`` or ``https://`` URL
            uses that proxy; ``None`` connects directly. The connection goes
            through a ``CONNECT`` tunnel.
        open_timeout: Seconds for TCP, TLS and the WebSocket handshake
            together (redirects included).
        ping_interval: Seconds between keepalive pings; ``None`` disables.
        ping_timeout: Seconds to wait for a keepalive pong; then close 1011.
        close_timeout: Bound on the closing handshake.
        write_timeout: Bound on how long a send may wait for a server that
            doesn't read; then the connection is dropped.
        max_size: Largest incoming message in bytes (after decompression);
            ``None`` for no limit. Bigger messages close with 1009.
        max_queue: Incoming messages buffered before reading pauses.
        logger: Logger; ``logging.getLogger("wssync.client")`` by default.
        unix_path: Connect to this Unix socket instead (see :func:`unix_connect`).

    Raises:
        InvalidURI: ``uri`` isn't a valid WebSocket URI.
        InvalidHandshake: The server refused or botched the handshake
            (:exc:`~wssync.InvalidStatus` carries a non-101 response).
        TimeoutError: The opening handshake took longer than ``open_timeout``.
        OSError: The connection failed (e.g. :exc:`ConnectionRefusedError`,
            :exc:`ssl.SSLCertVerificationError`).
    """
    if extensions is None:
        if compression == "deflate":
            extensions = [ClientPerMessageDeflateFactory()]
        elif compression is None:
            extensions = []
        else:
            raise ValueError(f"unsupported compression: {compression}")
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    wsuri = parse_uri(uri)
    if not wsuri.secure and ssl not in (None, False):
        raise ValueError("ssl is only for wss:// URIs")
    if logger is None:
        logger = _logger

    def make_connection(
        sock: socket.socket, accepted: list[Extension]
    ) -> ClientConnection:
        protocol = Protocol(
            Side.CLIENT, extensions=accepted, max_size=max_size, logger=logger
        )
        connection = ClientConnection(
            sock,
            protocol,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            write_timeout=write_timeout,
            max_queue=max_queue,
            logger=logger,
        )
        connection._blocking_reads = True  # the socket is the connection's alone
        return connection

    for _ in range(MAX_REDIRECTS + 1):
        connecting = False  # the TCP connect is still in progress
        if sock is None:
            proxy_url = None if unix_path is not None else proxy_for(wsuri, proxy)
            if proxy_url is not None:
                connection_socket = open_tunnel(
                    proxy_url, wsuri, deadline, user_agent_header
                )
            else:
                connection_socket, connecting = _open_socket(wsuri, unix_path, deadline)
        else:
            connection_socket, sock = sock, None
        try:
            if wsuri.secure:
                connection_socket = _wrap_tls(
                    connection_socket, ssl, server_hostname or wsuri.host, deadline
                )
            handshake = ClientHandshake(
                wsuri,
                origin=origin,
                extensions=extensions,
                subprotocols=subprotocols,
                additional_headers=additional_headers,
                user_agent_header=user_agent_header,
            )
            request = handshake.request()
            # Non-blocking from here on, as the connection wants it: the
            # handshake polls only when it would block (see waiting.py).
            if connection_socket.gettimeout() != 0.0:
                connection_socket.setblocking(False)
            data = request.serialize()
            if connecting:
                data = _send_while_connecting(connection_socket, data, deadline)
                connecting = False
            send_all_by(connection_socket, data, deadline)
            # Without extensions to negotiate, the connection doesn't depend
            # on the response: it is made while the server works on that,
            # instead of after (over loopback, the response is then there
            # when the client looks). If the handshake fails, it is dropped.
            read_flags = 0
            if extensions:
                early = None
            else:
                early = make_connection(connection_socket, [])
                if not wsuri.secure:
                    # The socket's mode for the connection, set now: the
                    # response is read with flags that don't block either way.
                    early._set_socket_mode()
                    read_flags = early._dontwait
            handshake.expect_accept()
            response, leftover = _read_response(
                connection_socket, deadline, not wsuri.secure, read_flags
            )
            try:
                accepted_extensions, subprotocol = handshake.process_response(response)
            except InvalidStatus:
                location = response.headers.get("Location")
                if response.status_code not in _REDIRECTS or location is None:
                    raise
                wsuri = _redirect(wsuri, location, uri)
                logger.info("redirected to %s", location)
                connection_socket.close()
                continue
        except socket.timeout as exc:
            connection_socket.close()
            doing = "connecting" if connecting else "during the opening handshake"
            raise TimeoutError(f"timed out {doing}") from exc
        except BaseException:
            connection_socket.close()
            raise
        if early is None:
            connection = make_connection(connection_socket, accepted_extensions)
        else:
            connection = early
        connection.request = request
        connection.response = response
        connection.subprotocol = subprotocol
        connection._start(leftover)
        return connection
    raise InvalidHandshake(f"more than {MAX_REDIRECTS} redirects")


def unix_connect(
    path: str | os.PathLike[str], uri: str = "ws://localhost/", **options: Any
) -> ClientConnection:
    """Open a WebSocket connection over the Unix socket ``path``.

    Args:
        path: The socket's path.
        uri: The URI for the handshake (its host and path are sent to the
            server; use ``wss://`` for TLS over the socket).
        options: As for :func:`connect`.
    """
    return connect(uri, unix_path=path, **options)


def _open_socket(
    wsuri: WebSocketURI,
    unix_path: str | os.PathLike[str] | None,
    deadline: float | None,
) -> tuple[socket.socket, bool]:
    """Open the TCP (or Unix) connection to the server.

    Returns:
        The socket, and whether its TCP connect is still in progress: where
        the first send tells whether it is done (see
        :func:`_send_while_connecting`), a plain ``ws://`` connection to an
        IP address doesn't wait for it, and builds its request meanwhile.
    """
    if unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(time_left(deadline, _OPENING))
            sock.connect(os.fspath(unix_path))
        except socket.timeout as exc:
            sock.close()
            raise TimeoutError("timed out connecting") from exc
        except BaseException:
            sock.close()
            raise
        return sock, False
    family = _ip_family(wsuri.host)
    try:
        if family is None:
            return socket.create_connection(
                (wsuri.host, wsuri.port), time_left(deadline, _OPENING)
            ), False
        # An IP address: no name to resolve, and the socket is made
        # non-blocking as the handshake wants it, rather than switched
        # to time-out mode and back (a system call each way).
        sock = socket.socket(family, socket.SOCK_STREAM | _SOCK_NONBLOCK)
        try:
            if not _SOCK_NONBLOCK:  # pragma: no cover - not Linux
                sock.setblocking(False)
            connecting = start_connect(sock, (wsuri.host, wsuri.port))
            if connecting and (wsuri.secure or not _SEND_TELLS_CONNECTING):
                finish_connect(sock, deadline)
                connecting = False
        except BaseException:
            sock.close()
            raise
        return sock, connecting
    except socket.timeout as exc:
        raise TimeoutError("timed out connecting") from exc


#: Whether a send on a socket whose connect is in progress fails with
#: EAGAIN (and one whose connect failed, with its error), as Linux's does:
#: the first send then stands for the wait. Other systems may answer
#: ENOTCONN instead.
_SEND_TELLS_CONNECTING = sys.platform == "linux"


def _send_while_connecting(
    sock: socket.socket, data: bytes, deadline: float | None
) -> bytes:
    """Send what can go of ``data`` on a socket whose connect was in progress.

    Over loopback the connect is done by the time the request is built, and
    this send replaces a poll and a ``getsockopt``. Otherwise the send says
    EAGAIN, and the connect is waited for as usual.

    Returns:
        What is left to send.

    Raises:
        socket.timeout: The connect took longer than the deadline.
        OSError: The connection failed (e.g. :exc:`ConnectionRefusedError`).
    """
    try:
        sent = sock.send(data)
    except BlockingIOError:
        finish_connect(sock, deadline)
        return data
    return data[sent:]


#: Creates a socket non-blocking from the start, where the OS can.
_SOCK_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)


def _ip_family(host: str) -> int | None:
    """``AF_INET`` or ``AF_INET6`` if ``host`` is an IP address, else ``None``."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


def _wrap_tls(
    sock: socket.socket, ssl: SSLOption, server_hostname: str, deadline: float | None
) -> ssl_module.SSLSocket:
    context = ssl if isinstance(ssl, ssl_module.SSLContext) else None
    if context is None:
        context = ssl_module.create_default_context()
    sock.settimeout(time_left(deadline, _OPENING))
    return context.wrap_socket(sock, server_hostname=server_hostname)


def _read_response(
    sock: socket.socket, deadline: float | None, wait_first: bool, flags: int
) -> tuple[Response, bytes]:
    """Read the handshake response; return it with the bytes that followed it.

    ``wait_first``: the request just left, so the first read waits before
    it reads (see :func:`~wssync.waiting.recv_by`). ``flags``: for each
    ``recv()`` (``MSG_DONTWAIT`` if the socket blocks).
    """
    buffer = bytearray()
    parser = ResponseParser()  # resumes where it stopped: linear in bytes
    while True:
        data = recv_by(
            sock, HANDSHAKE_READ_SIZE, deadline, wait_first=wait_first, flags=flags
        )
        wait_first = False
        if not data:
            parsed = parser.parse(buffer, eof=True)
            if parsed is None:
                raise InvalidMessage("connection closed during the opening handshake")
            return parsed[0], b""
        buffer += data
        parsed = parser.parse(buffer)
        if parsed is not None:
            response, consumed = parsed
            return response, bytes(buffer[consumed:])


def _redirect(wsuri: WebSocketURI, location: str, original: str) -> WebSocketURI:
    # Join as HTTP URLs (urljoin knows their rules), then map back;
    # a Location may name ws(s):// or http(s):// URLs alike.
    scheme = "https" if wsuri.secure else "http"
    base = f"{scheme}://{wsuri.host}:{wsuri.port}{wsuri.resource_name}"
    for ws_scheme, http_scheme in (("wss://", "https://"), ("ws://", "http://")):
        if location.startswith(ws_scheme):
            location = http_scheme + location[len(ws_scheme) :]
    target = urllib.parse.urljoin(base, location)
    if target.startswith("http://"):
        target = "ws://" + target[len("http://") :]
    elif target.startswith("https://"):
        target = "wss://" + target[len("https://") :]
    new = parse_uri(target)
    if wsuri.secure and not new.secure:
        raise InvalidURI(original, f"redirect from wss:// to ws:// ({location})")
    return new


#: Back-off of :func:`reconnect`: first delay, growth factor and ceiling in
#: seconds. A quick first retry covers a server restart; the ceiling keeps a
#: long outage from turning into hours between attempts.
BACKOFF_INITIAL = 0.1
BACKOFF_FACTOR = 1.6
BACKOFF_MAX = 30.0


def reconnect(uri: str, **options: Any) -> Iterator[ClientConnection]:
    """Yield a fresh connection each time the previous one dropped.

    ::

        for ws in wssync.reconnect("ws://localhost:8765"):
            try:
                for message in ws:
                    process(message)
            except wssync.ConnectionClosed:
                continue

    Failed attempts are retried with exponential back-off (with jitter, so
    that many clients don't come back in step). Errors that retrying can't
    fix, such as an invalid URI or a 4xx answer other than 429, propagate.

    Args:
        uri: As for :func:`connect`.
        options: As for :func:`connect`.
    """
    delay = BACKOFF_INITIAL
    logger = options.get("logger") or _logger
    while True:
        try:
            connection = connect(uri, **options)
        except InvalidURI:
            raise
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 400 <= status < 500 and status != 429:
                raise
            error: BaseException = exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            error = exc
        else:
            delay = BACKOFF_INITIAL
            try:
                yield connection
            finally:
                connection.close()
            continue
        wait = delay * random.uniform(0.5, 1.5)
        logger.info("connection failed (%s); retrying in %.1f s", error, wait)
        time.sleep(wait)
        delay = min(delay * BACKOFF_FACTOR, BACKOFF_MAX)
