"""The threaded server: :class:`ThreadingServer`, :func:`serve` and :func:`unix_serve`.

One thread per connection runs the handler, a plain function. The accept
loop waits on the listening socket and a waker, so :meth:`shutdown` ends it
at once from any thread: no polling interval, unlike :mod:`socketserver`.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import hmac
import inspect
import logging
import os
import re
import socket
import ssl as ssl_module
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Callable, Union, cast

from .connection import Connection
from .exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidMessage,
)
from .sansio.extensions.base import ServerExtensionFactory
from .sansio.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from .sansio.handshake import USER_AGENT, Accepted, ServerHandshake
from .sansio.headers import build_www_authenticate_basic, parse_authorization_basic
from .sansio.http11 import Request, RequestParser, Response
from .sansio.protocol import Protocol, Side, State
from .waiting import Waker, recv_by, send_all_by, wait_socket

__all__ = [
    "ServerConnection",
    "ThreadingServer",
    "basic_auth",
    "serve",
    "unix_serve",
]

Handler = Callable[..., Any]
ProcessRequest = Callable[["ServerConnection", Request], Union[Response, None]]
ProcessResponse = Callable[
    ["ServerConnection", Request, Response], Union[Response, None]
]
Origin = Union[str, "re.Pattern[str]", None]

#: Bytes read per system call during the opening handshake: small, so that
#: an oversized request is refused after at most this much beyond the limit.
HANDSHAKE_READ_SIZE = 4096


class ServerConnection(Connection):
    """A connection accepted by a :class:`ThreadingServer` or :mod:`wssync.wsgi`.

    ``username`` is set by :func:`basic_auth` when it lets a request in.

    Not created directly: the handshake options are those of
    :class:`ThreadingServer` (``extensions`` being the factories to offer),
    and the other options are those of the connection.
    """

    username: str | None = None

    def __init__(
        self,
        sock: socket.socket,
        server: ThreadingServer | None = None,
        *,
        origins: Sequence[Origin] | None = None,
        extensions: Sequence[ServerExtensionFactory] = (),
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: Callable[[ServerConnection, Sequence[str]], str | None]
        | None = None,
        server_header: str | None = USER_AGENT,
        **options: Any,
    ) -> None:
        max_size = options.pop("max_size", 2**20)
        # A placeholder core until the handshake tells which extensions apply.
        super().__init__(sock, Protocol(Side.SERVER, max_size=max_size), **options)
        #: The :class:`ThreadingServer` that accepted the connection; ``None``
        #: when it was made otherwise (see :mod:`wssync.wsgi`).
        self.server = server
        self._max_size = max_size
        select = None
        chooser = select_subprotocol
        if chooser is not None:

            def select(subprotocols: Sequence[str]) -> str | None:
                return chooser(self, subprotocols)

        self._handshake = ServerHandshake(
            origins=origins,
            extensions=extensions,
            subprotocols=subprotocols,
            select_subprotocol=select,
            server_header=server_header,
        )

    def respond(self, status: int, text: str) -> Response:
        """Build a ``text/plain`` HTTP response, e.g. in ``process_request``.

        Its headers can be changed before returning it (say, to
        ``text/html``).

        Args:
            status: The HTTP status code.
            text: The body.
        """
        return self._handshake.reject(status, text)

    def _too_many(self) -> Response:
        response = self.respond(503, "Too many connections; try again later.\n")
        response.headers["Retry-After"] = "10"
        return response

    def _open(self, deadline: float) -> bool:
        """Run the opening handshake; return whether the connection is open.

        On failure the HTTP response has been sent and the caller closes
        the socket.
        """
        sock = self.socket
        buffer = bytearray()
        parser = RequestParser()  # resumes where it stopped: linear in bytes
        while True:
            try:
                parsed = parser.parse(buffer)
            except InvalidMessage as exc:
                self.logger.info("invalid handshake request: %s", exc)
                self._send_response(self._handshake.reject(exc.status_code, f"{exc}\n"))
                return False
            if parsed is not None:
                break
            data = recv_by(sock, HANDSHAKE_READ_SIZE, deadline)
            if not data:
                # RFC 9112 §9.6: nothing to answer once the client left.
                self.logger.debug("connection closed before the handshake request")
                return False
            buffer += data
        request, consumed = parsed
        self.request = request

        server = self.server
        assert server is not None
        if server._full():
            self._send_response(self._too_many())
            return False
        if server.process_request is not None:
            early = server.process_request(self, request)
            if early is not None:
                self._send_response(early)
                return False
        accepted = self._handshake.accept(request)
        response = accepted.response
        if accepted.error is not None:
            self.logger.info("invalid handshake: %s", accepted.error)
        elif server.process_response is not None:
            replacement = server.process_response(self, request, response)
            if replacement is not None:
                response = replacement
        if response.status_code == 101:
            refusal = server._admit(self)
            if refusal == "full":
                # Another handshake took the last place since the check above.
                response = self._too_many()
            elif refusal == "shutdown":
                response = self.respond(503, "The server is shutting down.\n")
        self._send_response(response, deadline)
        if response.status_code != 101:
            return False
        self._switch_protocols(accepted, bytes(buffer[consumed:]))
        return True

    def _switch_protocols(self, accepted: Accepted, leftover: bytes = b"") -> None:
        """Go live once the 101 response was sent.

        Shared by :meth:`_open` and :func:`wssync.wsgi.accept`, which parses
        no request itself but gets it from a WSGI server.

        Args:
            accepted: The handshake's decision.
            leftover: Bytes that followed the request: the first frames,
                if the client didn't wait.
        """
        self.protocol = Protocol(
            Side.SERVER,
            extensions=accepted.extensions,
            max_size=self._max_size,
            logger=self.logger,
        )
        self.subprotocol = accepted.subprotocol
        self._start(leftover)

    def _send_response(self, response: Response, deadline: float | None = None) -> None:
        """Send an HTTP response and log it.

        Args:
            response: The response.
            deadline: For a non-blocking socket (as :meth:`_open` has), when
                to give up; a blocking socket has its own time-out.
        """
        if "Date" not in response.headers:
            response.headers["Date"] = _http_date()
        self.response = response
        if self.socket.gettimeout() == 0.0:
            send_all_by(self.socket, response.serialize(), deadline)
        else:
            self.socket.sendall(response.serialize())
        level = logging.INFO if response.status_code == 101 else logging.DEBUG
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level,
                '%s "%s %s" %d',
                _format_address(self.remote_address),
                self.request.method if self.request else "-",
                self.request.path if self.request else "-",
                response.status_code,
            )


#: The Date header of the current second: formatting it costs more than the
#: rest of a small response's serialisation. (Second, value.)
_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The ``Date`` header value for now (RFC 9110 §6.6.1), cached per second."""
    global _date_cache
    now = time.time()
    second, value = _date_cache
    if int(now) != second:
        value = email.utils.formatdate(now, usegmt=True)
        _date_cache = (int(now), value)  # one assignment: safe across threads
    return value


def _format_address(address: Any) -> str:
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address or "unix")


#: What a handler thread is handed: the accepted socket, the client's
#: address and the thread's name while it handles that connection.
_Job = tuple[socket.socket, Any, str]

#: Handler threads kept waiting for the next connection, at most, and for how
#: long (seconds). Enough to absorb a steady stream of short connections;
#: after a burst, the threads beyond it end.
MAX_IDLE_THREADS = 16
IDLE_THREAD_TIMEOUT = 2.0


class _Worker:
    """An idle handler thread's mailbox: the next job, and a lock to wake it."""

    __slots__ = ("_job", "_ready")

    def __init__(self) -> None:
        self._job: _Job | None = None
        # Held while there is nothing to do; released to hand a job over.
        self._ready = threading.Lock()
        self._ready.acquire()

    def hand(self, job: _Job | None) -> None:
        """Give the thread its next job (``None``: end it), under the server's lock."""
        self._job = job
        self._ready.release()

    def wait(
        self, timeout: float, lock: threading.Lock, idle: list[_Worker]
    ) -> _Job | None:
        """Wait for the next job; ``None`` after ``timeout`` or at shutdown.

        Args:
            timeout: Seconds to wait.
            lock: The server's lock, which guards ``idle``.
            idle: The server's idle threads, this one among them.
        """
        if not self._ready.acquire(timeout=timeout):
            with lock:
                if self in idle:  # nobody picked this thread: end it
                    idle.remove(self)
                    return None
            # Picked just as the wait ran out: the job is being handed over.
            self._ready.acquire()
        job, self._job = self._job, None
        return job


class ThreadingServer:
    """A WebSocket server running each connection's handler in its own thread.

    A thread runs one connection at a time; once done, it waits up to
    :data:`IDLE_THREAD_TIMEOUT` seconds for the next connection rather than
    end (at most :data:`MAX_IDLE_THREADS` wait), so :class:`threading.local`
    data that a handler leaves behind may be seen by a later connection's
    handler. Context variables (:mod:`contextvars`) start afresh for each
    connection.

    Bound and listening when created; :meth:`serve_forever` or :meth:`start`
    accept connections. :func:`serve` and :func:`unix_serve` are the usual
    way to make one; they take the same arguments.

    Args:
        handler: Called with the :class:`ServerConnection` (and, if it takes
            two positional parameters, the request path) for each connection.
        host: Interface to listen on; ``None`` listens on all of them.
        port: TCP port; 0 picks a free one (see :attr:`port`).
        sock: An already bound and listening socket to use instead.
        unix_path: A Unix socket path to listen on instead of TCP.
        ssl: A server-side :class:`ssl.SSLContext` for ``wss://``.
        origins: Acceptable ``Origin`` values (strings or compiled regexes;
            ``None`` in the list accepts requests without one); others get
            403.
        subprotocols: Supported subprotocols, by order of preference.
        select_subprotocol: ``(connection, subprotocols) -> str | None`` to
            choose the subprotocol instead.
        compression: ``"deflate"`` (permessage-deflate) or ``None``.
        extensions: Extension factories to use instead of ``compression``'s.
        process_request: ``(connection, request) -> Response | None``; a
            response is sent instead of the handshake.
        process_response: ``(connection, request, response) -> Response | None``
            to inspect or replace the handshake response.
        server_header: ``Server`` header value; ``None`` leaves it out.
        open_timeout: Seconds for the TLS and WebSocket handshakes; slower
            clients are dropped.
        ping_interval: Seconds between keepalive pings; ``None`` disables.
        ping_timeout: Seconds to wait for a keepalive pong; then close 1011.
        close_timeout: Bound on the closing handshake, and on joining
            handler threads at shutdown.
        write_timeout: Bound on how long a send may wait for a peer that
            doesn't read; then the connection is dropped. ``None``: no
            bound (``close()`` and ``shutdown()`` still end the wait).
        max_size: Largest incoming message in bytes (after decompression);
            ``None`` for no limit. Bigger messages close with 1009.
        max_queue: Incoming messages buffered before reading pauses.
        max_connections: Above this many open connections, handshakes get 503.
        backlog: Listen backlog.
        logger: Logger; ``logging.getLogger("wssync.server")`` by default.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        unix_path: str | os.PathLike[str] | None = None,
        ssl: ssl_module.SSLContext | None = None,
        origins: Sequence[Origin] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: Callable[[ServerConnection, Sequence[str]], str | None]
        | None = None,
        compression: str | None = "deflate",
        extensions: Sequence[ServerExtensionFactory] | None = None,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        server_header: str | None = USER_AGENT,
        open_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        write_timeout: float | None = None,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        max_connections: int | None = None,
        backlog: int = 128,
        logger: logging.Logger | None = None,
    ) -> None:
        self.handler = handler
        self._pass_path = _takes_path(handler)
        self._extensions = _extension_factories(compression, extensions)
        self.ssl = ssl
        self.origins = origins
        self.subprotocols = subprotocols
        self.select_subprotocol = select_subprotocol
        self.process_request = process_request
        self.process_response = process_response
        self.server_header = server_header
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_connections = max_connections
        self.logger = logger or logging.getLogger("wssync.server")
        self._options: dict[str, Any] = {
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "write_timeout": write_timeout,
            "max_size": max_size,
            "max_queue": max_queue,
            "logger": self.logger,
        }

        if sock is None:
            if unix_path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.bind(os.fspath(unix_path))
                    sock.listen(backlog)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = _bind(host, port, backlog)
        self.socket: socket.socket = sock
        sock.setblocking(False)
        self._waker = Waker()
        self._lock = threading.Lock()
        self._connections: set[ServerConnection] = set()
        self._opening: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._idle: list[_Worker] = []  # handler threads waiting for work
        self._shutdown_requested = False
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._background: threading.Thread | None = None

    # ------------------------------------------------------------ addresses

    @property
    def server_address(self) -> Any:
        """The address the server listens on (``(host, port)`` or a path)."""
        return self.socket.getsockname()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self.server_address[1])

    def fileno(self) -> int:
        """The listening socket's file descriptor."""
        return self.socket.fileno()

    @property
    def connections(self) -> set[ServerConnection]:
        """A snapshot of the open connections."""
        with self._lock:
            return {c for c in self._connections if c.state is State.OPEN}

    # -------------------------------------------------------------- serving

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown`; Ctrl-C interrupts it."""
        with self._lock:
            if self._shutdown_requested:
                return
            self._stopped.clear()
        self._serving.set()
        try:
            while not self._shutdown_requested:
                if not wait_socket(self.socket, False, None, self._waker):
                    continue
                try:
                    client, address = self.socket.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    if self._shutdown_requested:
                        break
                    # EMFILE and friends: log, and let the backlog wait.
                    self.logger.error("accept failed: %s", exc)
                    continue
                self._start_thread(client, address)
        finally:
            self._serving.clear()
            self._stopped.set()

    def start(self) -> ThreadingServer:
        """Serve in a background daemon thread and return at once."""
        if self._background is None:
            self._background = threading.Thread(
                target=self.serve_forever, name="wssync-server", daemon=True
            )
            self._background.start()
            self._serving.wait()
        return self

    def _start_thread(self, client: socket.socket, address: Any) -> None:
        """Run the connection in an idle handler thread, or in a new one."""
        name = f"wssync-handler-{_format_address(address)}"
        with self._lock:
            self._opening.add(client)
            if self._idle:
                self._idle.pop().hand((client, address, name))
                return
            thread = threading.Thread(
                target=self._work, args=((client, address, name),), daemon=True
            )
            thread.name = name
            self._threads.add(thread)
        thread.start()

    def _work(self, job: _Job | None) -> None:
        """Handle connections, one at a time: the body of a handler thread.

        After a connection, the thread waits up to :data:`IDLE_THREAD_TIMEOUT`
        for the next one rather than exit: starting a thread (and the
        accept loop waiting for it to start) cost more than the rest of a
        connection's set-up. S5 (sequential connect + handshake + close,
        in-process load, A/B): server CPU about 560 -> 250 us per connection,
        connections/s about 1,100 -> 3,000.
        """
        worker = _Worker()
        try:
            while job is not None:
                client, address, name = job
                threading.current_thread().name = name
                # A fresh context for each connection, as in a new thread:
                # context variables don't leak from one handler to the next.
                contextvars.Context().run(self._handle, client, address)
                with self._lock:
                    if self._shutdown_requested or len(self._idle) >= MAX_IDLE_THREADS:
                        return
                    self._idle.append(worker)
                job = worker.wait(IDLE_THREAD_TIMEOUT, self._lock, self._idle)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _handle(self, client: socket.socket, address: Any) -> None:
        deadline = time.monotonic() + (
            self.open_timeout if self.open_timeout is not None else 1e9
        )
        connection: ServerConnection | None = None
        try:
            try:
                if self.ssl is not None:
                    client.settimeout(max(0.0, deadline - time.monotonic()))
                    raw = client
                    client = self.ssl.wrap_socket(raw, server_side=True)
                    with self._lock:
                        self._opening.discard(raw)
                        self._opening.add(client)
                # Non-blocking from here on, as the connection wants it: the
                # handshake polls only when it would block (see waiting.py).
                client.setblocking(False)
                connection = ServerConnection(
                    client,
                    self,
                    origins=self.origins,
                    extensions=self._extensions,
                    subprotocols=self.subprotocols,
                    select_subprotocol=self.select_subprotocol,
                    server_header=self.server_header,
                    **self._options,
                )
                connection._blocking_reads = True  # the socket is its alone
                if self._shutdown_requested:
                    return
                opened = connection._open(deadline)
            except (OSError, InvalidHandshake, ssl_module.SSLError) as exc:
                # Time-outs (slowloris), resets, TLS failures: drop quietly.
                self.logger.debug("opening handshake failed: %r", exc)
                opened = False
            except Exception:
                self.logger.exception("opening handshake failed")
                opened = False
            with self._lock:
                self._opening.discard(client)
            if not opened:
                _close_quietly(client)
                return
            assert connection is not None
            self._run_handler(connection)
        finally:
            with self._lock:
                self._opening.discard(client)
                if connection is not None:
                    self._connections.discard(connection)

    def _admit(self, connection: ServerConnection) -> str | None:
        """Count a connection as open, just before its 101 goes out.

        From then on :meth:`shutdown` closes it with a closing handshake
        (queued until it is live) instead of dropping it as a handshake in
        progress. The check of ``max_connections`` and the counting happen
        under one lock, so concurrent handshakes can't overshoot it.

        Returns:
            ``None`` if admitted; else why not: ``"shutdown"`` or ``"full"``.
        """
        with self._lock:
            if self._shutdown_requested:
                return "shutdown"
            if self._full_locked():
                return "full"
            self._opening.discard(connection.socket)
            self._connections.add(connection)
            return None

    def _full(self) -> bool:
        """Whether ``max_connections`` connections are admitted and not closed."""
        with self._lock:
            return self._full_locked()

    def _full_locked(self) -> bool:
        if self.max_connections is None:
            return False
        # Admitted connections count from their 101 on, before they go live
        # (their state is CONNECTING until then), until they are CLOSED.
        live = sum(1 for c in self._connections if c.state is not State.CLOSED)
        return live >= self.max_connections

    def _run_handler(self, connection: ServerConnection) -> None:
        try:
            if self._pass_path:
                self.handler(connection, connection.path)
            else:
                self.handler(connection)
        except ConnectionClosedOK:
            # The seed's producer pattern: send() raises once the client
            # left. That's how such a handler ends, not a failure.
            pass
        except ConnectionClosedError as exc:
            self.logger.info("connection closed abnormally: %s", exc)
        except Exception:
            self.logger.error("connection handler failed", exc_info=True)
            connection.close(1011, "")
            return
        connection.close()

    # ------------------------------------------------------------- stopping

    def shutdown(
        self, close_connections: bool = True, code: int = 1001, reason: str = ""
    ) -> None:
        """Stop serving; thread-safe and idempotent.

        Stops accepting, closes open connections with ``code`` (all at once,
        not one after the other) and joins handler threads, all within
        ``close_timeout``.

        Args:
            close_connections: Close open connections too.
            code: Close code for them (1001, going away, by default).
            reason: Close reason for them.
        """
        with self._lock:
            self._shutdown_requested = True
            opening = list(self._opening)
            # Idle handler threads end now; the others when their
            # connection does.
            for worker in self._idle:
                worker.hand(None)
            self._idle.clear()
        self._waker.wake()
        if self._background is not threading.current_thread():
            self._stopped.wait()
        self.server_close()
        for sock in opening:
            # Handshakes in progress end now instead of at open_timeout.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if not close_connections:
            return
        deadline = time.monotonic() + (
            self.close_timeout if self.close_timeout is not None else 10
        )
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for connection in connections:
            connection._close_nowait(code, reason)
        for connection in connections:
            connection._wait_finished(deadline)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            self.logger.warning(
                "%d handler thread(s) still running after shutdown: %s",
                len(stuck),
                ", ".join(stuck),
            )

    def server_close(self) -> None:
        """Close the listening socket (done by :meth:`shutdown` too)."""
        _close_quietly(self.socket)
        if self._stopped.is_set():
            # No accept loop waits on the waker any more.
            self._waker.close()

    def __enter__(self) -> ThreadingServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        try:
            address: Any = self.server_address
        except OSError:
            address = "closed"
        return f"<ThreadingServer {address!r}>"


def _extension_factories(
    compression: str | None, extensions: Sequence[ServerExtensionFactory] | None
) -> list[ServerExtensionFactory]:
    """The extension factories for the ``compression`` and ``extensions`` options."""
    if extensions is not None:
        return list(extensions)
    if compression == "deflate":
        return [ServerPerMessageDeflateFactory()]
    if compression is None:
        return []
    raise ValueError(f"unsupported compression: {compression}")


def _takes_path(handler: Handler) -> bool:
    """Whether a handler has the seed's ``(websocket, path)`` signature."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.default is p.empty
    ]
    return len(positional) >= 2


def _bind(host: str | None, port: int | None, backlog: int) -> socket.socket:
    if host is None:
        if socket.has_dualstack_ipv6():
            return socket.create_server(
                ("", port or 0),
                family=socket.AF_INET6,
                backlog=backlog,
                dualstack_ipv6=True,
            )
        return socket.create_server(("", port or 0), backlog=backlog)
    infos = socket.getaddrinfo(
        host, port or 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    return socket.create_server(address[:2], family=family, backlog=backlog)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def serve(
    handler: Handler, host: str | None = None, port: int | None = None, **options: Any
) -> ThreadingServer:
    """Create a :class:`ThreadingServer` listening on ``host`` and ``port``.

    Use it as a context manager and call :meth:`~ThreadingServer.serve_forever`::

        with wssync.serve(echo, "localhost", 8765) as server:
            server.serve_forever()

    Options are those of :class:`ThreadingServer`.
    """
    return ThreadingServer(handler, host, port, **options)


def unix_serve(
    handler: Handler, path: str | os.PathLike[str], **options: Any
) -> ThreadingServer:
    """Create a :class:`ThreadingServer` listening on the Unix socket ``path``."""
    return ThreadingServer(handler, unix_path=path, **options)


def basic_auth(
    realm: str = "",
    credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
    check_credentials: Callable[[str, str], bool] | None = None,
) -> ProcessRequest:
    """Build a ``process_request`` that enforces HTTP Basic Authentication (RFC 7617).

    Args:
        realm: The protection space, shown by browsers.
        credentials: A ``(username, password)`` pair or several of them.
        check_credentials: ``(username, password) -> bool``, instead of
            ``credentials``.

    Returns:
        A function to pass as ``process_request``. It answers 401 to
        requests without valid credentials and sets ``connection.username``
        on the others.
    """
    if (credentials is None) == (check_credentials is None):
        raise TypeError("provide either credentials or check_credentials")
    if credentials is not None:
        if (
            isinstance(credentials, tuple)
            and len(credentials) == 2
            and all(isinstance(x, str) for x in credentials)
        ):
            pairs = [cast("tuple[str, str]", credentials)]
        else:
            pairs = list(cast("Iterable[tuple[str, str]]", credentials))
        known = dict(pairs)

        def check(username: str, password: str) -> bool:
            expected = known.get(username)
            # Compare in constant time to leak nothing about the password.
            return expected is not None and hmac.compare_digest(
                expected.encode(), password.encode()
            )

        check_credentials = check
    assert check_credentials is not None
    checker = check_credentials

    def process_request(
        connection: ServerConnection, request: Request
    ) -> Response | None:
        value = request.headers.get("Authorization")
        if value is not None:
            try:
                username, password = parse_authorization_basic(value)
            except InvalidHandshake:
                pass
            else:
                if checker(username, password):
                    connection.username = username
                    return None
        response = connection.respond(401, "Missing or invalid credentials.\n")
        response.headers["WWW-Authenticate"] = build_www_authenticate_basic(realm)
        return response

    return process_request
