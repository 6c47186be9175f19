"""WebSocket endpoints inside WSGI applications, on the WSGI server's own port.

WSGI has no notion of a connection that outlives its request, so a WebSocket
endpoint takes the request's connection over from the WSGI server:
:func:`accept` completes the opening handshake on it and returns a
:class:`~wssync.ServerConnection`; the worker thread serves the WebSocket;
then :func:`release` hands the worker back, telling the WSGI server that the
connection is gone, so that it writes no HTTP response on it, logs no error
and doesn't wait for another request on it::

    from wssync.wsgi import HandshakeRejected, accept, release

    def app(environ, start_response):
        try:
            ws = accept(environ)
        except HandshakeRejected as exc:  # not a WebSocket handshake
            return exc(environ, start_response)
        with ws:
            for message in ws:
                ws.send(message)
        return release(environ, start_response)

:func:`websocket_app` does all of that for a handler; :mod:`wssync.flask` and
:mod:`wssync.django` build on it.

Servers that hand their connection over, and how they give it (each was
checked by running it; ``tests/test_wsgi.py`` keeps checking):

* werkzeug's development server (``flask run``, ``app.run()``) puts its
  socket in ``environ["werkzeug.socket"]``.
* gunicorn, with the ``sync`` and ``gthread`` workers, puts it in
  ``environ["gunicorn.socket"]``.
* :mod:`wsgiref`, which Django's ``runserver`` extends, passes the buffered
  reader over its socket as ``environ["wsgi.input"]`` (Django wraps it in a
  ``LimitedStream``); the reader's file descriptor is the socket's.

Servers that read the request into memory or a file and do their own I/O
(waitress, uWSGI, mod_wsgi, cheroot...) have no socket to give: :func:`accept`
raises :exc:`UnsupportedServer`, naming the servers above. So does a TLS
connection (TLS state can't be shared): terminate TLS in a proxy.

wssync works on a duplicate of the server's file descriptor, so that the
server's socket object stays valid for the server to close in its own way.
When the WebSocket connection ended, :func:`release` shuts the TCP connection
down and puts the descriptor back in the blocking mode it found; how each
server is then told to let go is written down next to the code
(:func:`release` and ``_ConnectionTakenOver``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import socket
import ssl
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Optional

from .exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    WebSocketException,
)
from .sansio.handshake import Accepted
from .sansio.headers import Headers
from .sansio.http11 import Request, Response
from .server import ServerConnection, _extension_factories

__all__ = [
    "SUPPORTED_SERVERS",
    "HandshakeRejected",
    "UnsupportedServer",
    "accept",
    "release",
    "websocket_app",
]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

#: What :exc:`UnsupportedServer` tells the developer.
SUPPORTED_SERVERS = (
    "werkzeug's development server (flask run, app.run()), "
    "gunicorn with the sync or gthread worker, "
    "and wsgiref, which Django's runserver is built on"
)

#: Where :func:`accept` leaves its bookkeeping for :func:`release`.
_ENVIRON_KEY = "wssync.takeover"

#: Default ``open_timeout``: seconds to send the 101 response, as for
#: :class:`~wssync.ThreadingServer` (the request was read by the WSGI server).
_DEFAULT_OPEN_TIMEOUT = 10.0

logger = logging.getLogger("wssync.server")


class HandshakeRejected(InvalidHandshake):
    """The request isn't a valid WebSocket opening handshake.

    Nothing was sent and the WSGI server still owns the connection: answer
    with :attr:`response`, which says what was wrong (a 426 Upgrade Required
    for a plain HTTP request, 400 for a malformed handshake, 403 for an
    origin that isn't allowed...). The exception is itself a WSGI
    application that sends it::

        try:
            ws = accept(environ)
        except HandshakeRejected as exc:
            return exc(environ, start_response)

    Attributes:
        response: The HTTP error response.
    """

    def __init__(self, response: Response, message: str = "") -> None:
        super().__init__(response, message)
        self.response = response
        self.message = message or response.body.decode(errors="replace").strip()

    def __str__(self) -> str:
        return f"{self.response.status_code}: {self.message}"

    def __call__(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Send :attr:`response` through the WSGI server."""
        response = self.response
        status = f"{response.status_code} {response.reason_phrase}".rstrip()
        start_response(status, _error_headers(response, environ))
        return [response.body]


def _error_headers(response: Response, environ: Environ) -> list[tuple[str, str]]:
    """The headers of an error response, as a WSGI application may send them.

    ``Connection`` is the server's business and ``Server`` and ``Date`` are
    its to add. PEP 3333 forbids hop-by-hop headers, which wsgiref enforces
    with an assertion, but RFC 7231 §6.5.15 wants ``Upgrade`` on a 426 and
    gunicorn and werkzeug pass it on: it's left out for wsgiref only.
    """
    dropped = {"connection", "server", "date"}
    if environ.get("SERVER_SOFTWARE", "").startswith("WSGIServer/"):
        dropped.add("upgrade")
    return [
        (name, value)
        for name, value in response.headers.raw_items()
        if name.lower() not in dropped
    ]


class UnsupportedServer(WebSocketException, RuntimeError):
    """The WSGI server can't hand its connection over for a WebSocket."""


class _Takeover:
    """A connection taken over from a WSGI server, until it's handed back."""

    def __init__(
        self,
        server: str,
        server_fd: int,
        connection: ServerConnection,
        blocking: bool,
    ) -> None:
        self.server = server
        self.server_fd = server_fd
        self.connection = connection
        self.blocking = blocking
        self.released = False

    def finish(self) -> None:
        """Close the WebSocket connection and give the socket back as found."""
        if self.released:
            return
        self.released = True
        self.connection.close()
        # However the connection ended (closing handshake, time-out, the
        # peer vanishing), shut the TCP connection down both ways for every
        # descriptor: the server's next read finds EOF and any write it
        # attempts fails with EPIPE, so no byte of HTTP can follow the
        # WebSocket on the wire. (shutdown, unlike close, acts on the
        # connection, not on one descriptor.)
        with contextlib.suppress(OSError):
            sock = socket.socket(fileno=os.dup(self.server_fd))
            with sock:
                sock.shutdown(socket.SHUT_RDWR)
        # Our descriptor is a duplicate, but O_NONBLOCK belongs to the open
        # file description that both share: restore it for the server.
        with contextlib.suppress(OSError):  # the server closed it already
            os.set_blocking(self.server_fd, self.blocking)


# ----------------------------------------------------------------- handshake


def _request(environ: Environ) -> Request:
    """Rebuild the handshake request from a WSGI environ."""
    path = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not path:
        # PEP 3333: the paths are bytes decoded as Latin-1.
        raw = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode(
            "latin-1", "replace"
        )
        path = urllib.parse.quote(raw, safe="/;=,:@!$&'()*+~") or "/"
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
    headers = Headers()
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").title()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key.replace("_", "-").title()
        else:
            continue
        if not isinstance(value, str):
            continue
        headers[name] = value
    return Request(path, headers, environ.get("REQUEST_METHOD", "GET"))


def _check_handshake(connection: ServerConnection, environ: Environ) -> Accepted:
    """Run the handshake checks; raise :exc:`HandshakeRejected` if they fail."""
    handshake = connection._handshake
    try:
        request = _request(environ)
    except ValueError as exc:
        # Headers refuses control characters that a lax server let through.
        response = handshake.reject(400, f"Invalid request header: {exc}.\n")
        raise HandshakeRejected(response) from exc
    connection.request = request
    accepted = handshake.accept(request)
    if accepted.error is not None:
        raise HandshakeRejected(accepted.response) from accepted.error
    protocol = environ.get("SERVER_PROTOCOL", "")
    if protocol != "HTTP/1.1":
        # RFC 6455 §4.1 upgrades an HTTP/1.1 connection; an HTTP/2 stream
        # (RFC 8441) would need the server's cooperation.
        response = handshake.reject(
            400, f"WebSocket needs HTTP/1.1; this request came over {protocol}.\n"
        )
        raise HandshakeRejected(response)
    return accepted


# -------------------------------------------------------------- the socket


def _server_socket(environ: Environ) -> tuple[str, socket.socket | int]:
    """Find the request's socket: which server, and its socket or descriptor."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        return "werkzeug", sock
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        return "gunicorn", sock
    # wsgiref reads the request through a buffered reader over a
    # socket.SocketIO and passes that reader on as wsgi.input. Only a
    # socket can stand behind a SocketIO, so its descriptor is the socket.
    reader = _socket_reader(environ)
    if reader is not None:
        return "wsgiref", reader.fileno()
    software = environ.get("SERVER_SOFTWARE") or "This WSGI server"
    raise UnsupportedServer(
        f"{software} cannot hand its connection over for a WebSocket. "
        f"wssync.wsgi supports {SUPPORTED_SERVERS}."
    )


def _socket_reader(environ: Environ) -> io.BufferedReader | None:
    """The buffered reader over the request's socket behind ``wsgi.input``.

    Django's runserver wraps it in a ``LimitedStream``, which keeps the
    reader's bound ``read`` method (Django 5) or the reader itself as
    ``stream`` (Django 4); werkzeug's ``LimitedStream`` keeps it as
    ``_stream``. A few levels of such wrappers are looked through.
    """
    stream = environ.get("wsgi.input")
    for _ in range(4):
        if isinstance(stream, io.BufferedReader):
            if isinstance(stream.raw, socket.SocketIO):
                return stream
            return None
        inner = None
        for name in ("stream", "_stream"):
            inner = getattr(stream, name, None)
            if inner is not None:
                break
        else:
            inner = getattr(getattr(stream, "_read", None), "__self__", None)
        if inner is None:
            return None
        stream = inner
    return None


def _buffered_input(environ: Environ) -> bytes:
    """Take what the server's reader holds beyond the request head.

    A client that sends frames before it has read the 101 breaks RFC 6455
    §4.1, but the servers read ahead into a buffer, so whatever came early
    is taken from there rather than lost. The descriptor is non-blocking at
    this point: ``read1`` returns at once.
    """
    if "gunicorn.socket" in environ:
        return _gunicorn_buffered(environ)
    stream = _socket_reader(environ)
    if stream is None:
        return b""
    chunks = []
    try:
        while True:
            data = stream.read1(65536)
            if not data:
                break
            chunks.append(data)
    except (OSError, ValueError):
        pass
    return b"".join(chunks)


def _duplicate(found: socket.socket | int) -> tuple[socket.socket, int]:
    """Make wssync's own socket for the connection; return it and the server's fd."""
    if isinstance(found, int):
        return socket.socket(fileno=os.dup(found)), found
    if isinstance(found, ssl.SSLSocket):
        # TLS state can't be shared between two descriptors.
        raise UnsupportedServer(
            "wssync.wsgi cannot take over a TLS connection from the WSGI "
            "server; terminate TLS in a proxy in front of it (nginx, caddy...)."
        )
    return found.dup(), found.fileno()


def _gunicorn_buffered(environ: Environ) -> bytes:
    """Take what gunicorn's parser read beyond the request head.

    gunicorn reads the socket in chunks into an "unreader", which
    ``wsgi.input`` (a ``Body`` over a ``LengthReader``) leads to.
    """
    reader = getattr(environ.get("wsgi.input"), "reader", None)
    unreader = getattr(reader, "unreader", None)
    take = getattr(unreader, "take_buffered", None)  # recent gunicorn
    if take is not None:
        data = take()
    else:
        buf = getattr(unreader, "buf", None)
        data = buf.getvalue() if isinstance(buf, io.BytesIO) else b""
        if data:
            unreader.buf = io.BytesIO()  # type: ignore[union-attr]
    return data if isinstance(data, bytes) else b""


def accept(environ: Environ, **options: Any) -> ServerConnection:
    """Complete the opening handshake on the WSGI server's connection.

    Call it from a WSGI application (or a Flask or Django view) running in a
    threaded WSGI server; the worker thread then serves the WebSocket until
    the application returns :func:`release`. See the module documentation
    for the servers that support this.

    Args:
        environ: The WSGI environ of the request.
        options: The handshake and connection options of
            :class:`~wssync.ThreadingServer`: ``origins``,
            ``subprotocols``, ``select_subprotocol``, ``compression``,
            ``extensions``, ``server_header``, ``open_timeout``,
            ``ping_interval``, ``ping_timeout``, ``close_timeout``,
            ``write_timeout``, ``max_size``, ``max_queue``, ``logger``.

    Returns:
        The open connection. Its ``server`` attribute is ``None``.

    Raises:
        UnsupportedServer: The WSGI server can't hand over its socket.
        HandshakeRejected: The request isn't a valid WebSocket handshake;
            nothing was sent, the exception carries the error response.
        OSError: The connection broke while the 101 response was sent.
    """
    if _ENVIRON_KEY in environ:
        raise RuntimeError("accept() was already called for this request")
    options = dict(options)
    open_timeout = options.pop("open_timeout", _DEFAULT_OPEN_TIMEOUT)
    options["extensions"] = _extension_factories(
        options.pop("compression", "deflate"), options.pop("extensions", None)
    )
    options.setdefault("logger", logger)

    server, found = _server_socket(environ)
    sock, server_fd = _duplicate(found)
    blocking = os.get_blocking(server_fd)
    try:
        connection = ServerConnection(sock, **options)
        accepted = _check_handshake(connection, environ)
        sock.settimeout(open_timeout)
        connection._send_response(accepted.response)
        # Non-blocking from here on, as the connection wants it; this also
        # keeps reading the server's buffer from waiting.
        sock.setblocking(False)
        connection._switch_protocols(accepted, _buffered_input(environ))
    except BaseException:
        sock.close()
        os.set_blocking(server_fd, blocking)
        raise
    environ[_ENVIRON_KEY] = _Takeover(server, server_fd, connection, blocking)
    return connection


# ---------------------------------------------------------- handing back


class _ConnectionTakenOver(ConnectionAbortedError):
    """Tells gunicorn or wsgiref that the connection isn't theirs anymore.

    Raised while the server iterates over the response (after
    ``start_response`` got a 101); each was checked by running it, and
    ``tests/test_wsgi.py`` keeps checking that nothing is written or logged:

    * gunicorn's ``sync`` and ``gthread`` workers re-raise an ``OSError``
      from the application and log only a debug line for ``ENOTCONN``
      ("Ignoring socket not connected"), then close the connection without
      keep-alive; the access log shows the 101.
    * wsgiref's ``BaseHandler.run`` (so Django's runserver) returns quietly
      on ``ConnectionAbortedError``, taken for a client that went away. Its
      next read of the socket finds EOF and it closes the connection.

    gunicorn also ends a request quietly on ``StopIteration`` raised by the
    application, which is what flask-sock does, but a generator anywhere in
    between turns ``StopIteration`` into ``RuntimeError`` (PEP 479), which
    gunicorn answers with a 500 and a logged traceback. A
    ``ConnectionAbortedError`` passes through generators unchanged.

    Raising it from the iteration rather than from the application call
    leaves the framework's machinery (Flask's error handlers, Django's
    middleware) out of it: they see an ordinary response; and servers still
    call the response's ``close()``, which Django relies on to close
    database connections.

    werkzeug is told differently, see :func:`release`.
    """

    def __init__(self) -> None:
        super().__init__(errno.ENOTCONN, "the connection was taken over by a WebSocket")


class _Released:
    """The WSGI response iterable after a WebSocket connection ended."""

    def __iter__(self) -> Iterator[bytes]:
        raise _ConnectionTakenOver()

    def close(self) -> None:
        """Nothing to release: the connection is closed already."""


def _finish(environ: Environ) -> _Takeover:
    """Close the connection from :func:`accept` and give the socket back."""
    takeover = environ.get(_ENVIRON_KEY)
    if not isinstance(takeover, _Takeover):
        raise RuntimeError("release() needs a connection made by accept()")
    takeover.finish()
    return takeover


def release(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Hand the worker back to the WSGI server once the WebSocket is done.

    Return its result from the WSGI application that called :func:`accept`.
    It closes the connection if it's still open (waiting at most
    ``close_timeout``), then tells the server that the connection is gone:
    the server writes no HTTP response, logs no error and doesn't wait for
    another request on the connection.

    Args:
        environ: The WSGI environ given to :func:`accept`.
        start_response: The WSGI ``start_response``.

    Returns:
        The WSGI response iterable.
    """
    takeover = _finish(environ)
    start_response("101 Switching Protocols", [])
    if takeover.server == "werkzeug":
        # werkzeug catches ConnectionError around the application ("client
        # went away") and would take _ConnectionTakenOver quietly too, but
        # its debugger (``flask run --debug``) catches every exception
        # first and answers with a 500 page, which werkzeug then logs as a
        # 500. An empty response goes through the debugger untouched;
        # werkzeug logs the 101 and writes its status line on a connection
        # that _Takeover.finish shut down: the write fails with EPIPE and
        # the BrokenPipeError is the "client went away" it ignores.
        return []
    return _Released()


def _serve(
    environ: Environ,
    handler: Callable[[ServerConnection], Any],
    options: dict[str, Any],
) -> Optional[HandshakeRejected]:
    """Accept, run the handler, close the connection and give the socket back.

    The connection is closed when the handler returns; if it raises, the
    error is logged and the close code is 1011. A
    :exc:`~wssync.ConnectionClosed` escaping the handler only means that the
    connection ended first: no error.

    Returns:
        The rejection to answer if the request wasn't a valid handshake.
    """
    try:
        connection = accept(environ, **options)
    except HandshakeRejected as exc:
        return exc
    try:
        handler(connection)
    except ConnectionClosedOK:
        pass  # the handler read on after a normal close: nothing went wrong
    except ConnectionClosed as exc:
        # The peer vanished or broke the protocol: not the handler's bug.
        connection.logger.info("connection closed: %s", exc)
    except Exception:
        connection.logger.error("connection handler failed", exc_info=True)
        connection.close(1011, "")
    finally:
        _finish(environ)
    return None


def websocket_app(
    handler: Callable[[ServerConnection], Any], **options: Any
) -> WSGIApp:
    """Turn a WebSocket handler into a WSGI application.

    ::

        def echo(ws):
            for message in ws:
                ws.send(message)

        app = websocket_app(echo)  # then: gunicorn -k gthread module:app

    The handler runs in the WSGI server's worker thread. When it returns,
    the connection is closed; if it raises, the error is logged and the
    connection is closed with code 1011. Requests that aren't WebSocket
    handshakes get the error response of :exc:`HandshakeRejected` (426 for
    plain HTTP).

    Args:
        handler: Called with the :class:`~wssync.ServerConnection`.
        options: As for :func:`accept`.

    Returns:
        The WSGI application.
    """

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        rejection = _serve(environ, handler, options)
        if rejection is not None:
            return rejection(environ, start_response)
        return release(environ, start_response)

    return app
