"""The blocking, thread-safe WebSocket connection.

Threading model (docs/topics/design.rst tells the why):

* The thread that calls :meth:`Connection.recv` reads the socket itself and
  parses what it reads: no reader thread, no hand-off per message.
* When no thread reads, the process-wide watcher (:mod:`wssync.watcher`)
  reads instead: pings are answered and closes noticed while the
  application sends, sleeps or computes.
* A read or write that would block polls the socket together with the
  waiting thread's waker, so :meth:`close`, a keepalive failure or
  :meth:`ThreadingServer.shutdown` can end any wait. The exception: a
  thread (not the main one) waiting for a message with no time-out blocks
  in recv() on its socket, which only the end of the connection must end,
  and every end goes through shutdown() (see _start and _abort).

Lock discipline:

``_lock`` (with the condition ``_cond``)
    Guards the protocol core, the message queue, the output queue
    ``_out`` and the role flags below. Held only for computation: never
    across a system call that may block, never while running user code.
``_send_lock``
    Serialises whole outgoing messages so that fragments of two messages
    never interleave, and makes its holder the only thread writing to the
    socket. A holder may wait for the socket to become writable: that wait
    can be woken (by :meth:`close` from another thread, for one) and is
    bounded by ``write_timeout`` when set.
    Nobody waits for ``_send_lock`` without a bound: :meth:`close` waits at
    most ``close_timeout``, the watcher and :func:`broadcast` never wait.
``_tls_lock`` (TLS only)
    Taken around each non-blocking read or write of the SSL object: OpenSSL
    forbids using one from two threads at once.
Roles
    ``_reader`` is the waker of the thread reading the socket (``None``
    when no thread reads; ``_WATCHER`` for the watcher; ``_BLOCKED`` for a
    thread blocked in ``recv()``, which ``shutdown()`` wakes); exactly one
    thread may read at a time. The
    socket is closed by whoever releases the last role after the
    connection ended, so no thread ever uses a closed file descriptor.

User code runs only in the application's threads; the watcher runs
nothing but this module's non-blocking callbacks.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import logging
import os
import selectors
import socket
import ssl
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Callable, Union

from .exceptions import ConnectionClosed, ConnectionClosedOK
from .sansio.frames import Opcode
from .sansio.http11 import Request, Response
from .sansio.protocol import Protocol, Side, State
from .sending import send_small
from .waiting import Waker, thread_waker, wait_socket
from .watcher import LAZY_DELAY, get_watcher

# Module constants: looking an enum member up on its class costs 60 ns (3.11).
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE
_OPEN = State.OPEN
_CLOSED = State.CLOSED

__all__ = ["BROADCAST_LIMIT", "Connection", "Data", "broadcast"]

Data = Union[str, bytes]

#: Bytes read per system call. Large enough that a 1 MiB message takes few
#: reads; the buffer belongs to the reading thread, not to the connection,
#: so idle connections cost none of it.
READ_SIZE = 256 * 1024

#: Most buffers handed to one sendmsg() call (POSIX guarantees 16, Linux 1024).
_IOV_MAX = 16 if sys.platform != "linux" else 64

#: Replies held back while more messages wait to be received (see
#: Connection._cork): only if recv() returned within CORK_WINDOW seconds, at
#: most CORK_CHUNKS chunks, for at most CORK_DELAY seconds. (The bound costs
#: the watcher a wake-up per CORK_DELAY while replies are held back: 10 ms
#: keeps that under 1% of a busy connection's time.) 32 chunks make one
#: system call per 32 replies, and let the peer start on the first ones while
#: the rest are answered: with 64 messages in flight (benchmark S2), holding
#: all 64 made both ends take turns, 7% slower than 32 (24 and 48 alike).
CORK_WINDOW = 0.002
CORK_CHUNKS = 32
CORK_DELAY = 0.01

#: Keepalive pings remembered while unanswered: their pongs still measure
#: latency when they come late, in order, after a pause.
KEEPALIVE_PINGS_TRACKED = 4

#: Longest wait for the application to answer the messages that came before
#: bad input, before the close frame goes out anyway (see Connection._receive).
PENDING_FAILURE_DELAY = 0.5

#: Bookkeeping counted per buffered message, so that a flood of empty
#: messages is bounded too.
MESSAGE_OVERHEAD = 64

#: Bytes of buffered messages that pause reading when ``max_size`` is
#: ``None`` (the default ``max_size``).
DEFAULT_QUEUE_BYTES = 2**20

_EOF = b""  # marker in the output queue: half-close the socket here

#: Per-call non-blocking flag, where the OS has one (not Windows).
_MSG_DONTWAIT: int = int(getattr(socket, "MSG_DONTWAIT", 0))  # not an IntFlag

#: Bytes asked for by a read that blocks (see Connection._recv_blocking):
#: small, since the thread holds the buffer while it waits; a full read is
#: followed at once by a non-blocking read into a READ_SIZE buffer.
BLOCKING_READ_SIZE = 512

#: Up to this size, what a full blocking read left is joined to it before
#: parsing (see Connection._recv_blocking).
JOIN_READS_LIMIT = 64 * 1024

_WANT_READ = (BlockingIOError, ssl.SSLWantReadError)
_WANT_WRITE = (BlockingIOError, ssl.SSLWantWriteError)

#: Marks the watcher as the holder of a connection's reader role. The watcher
#: never waits on a socket, so there is nothing to wake.
_WATCHER = object()

#: Marks a thread blocked in recv() as the holder of the reader role (see
#: Connection._read_blocking_for). shutdown() ends its wait: nothing to wake.
_BLOCKED = object()

_MAIN_THREAD_ID = threading.main_thread().ident


#: Free read buffers, shared by every thread. A thread holds one only while
#: it reads and parses, never while it waits: idle connections and their
#: blocked threads cost no buffer. (A fresh ``recv(READ_SIZE)`` per read
#: would cost an mmap each time at this size.)
_buffers: list[bytearray] = []

#: Free buffers kept for reuse; more readers than this at once allocate.
MAX_FREE_BUFFERS = 8


def _take_buffer() -> bytearray:
    try:
        return _buffers.pop()  # atomic: list operations hold the GIL
    except IndexError:
        return bytearray(READ_SIZE)


def _give_back(buffer: bytearray) -> None:
    if len(_buffers) < MAX_FREE_BUFFERS:
        _buffers.append(buffer)


def _done_with(data: memoryview | None) -> None:
    """Give back the read buffer under ``data``, if any."""
    if data is not None:
        _give_back(data.obj)  # type: ignore[arg-type]


class _Message:
    """A message being received: its fragments so far."""

    __slots__ = ("chunks", "complete", "size", "taken", "text")

    def __init__(self, text: bool, first: bytes, complete: bool) -> None:
        self.text = text
        self.chunks: list[bytes] = [first]
        self.complete = complete
        self.size = len(first)
        # Taken off the queue by recv_streaming() before its end arrived.
        self.taken = False

    def has_more(self, seen: int) -> bool:
        """Whether fragments beyond the first ``seen`` arrived, or the end."""
        return self.complete or len(self.chunks) > seen


def _close_socket(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


class Connection:
    """A WebSocket connection, after the opening handshake.

    Not created directly: :func:`~wssync.connect` and the server make them.
    Use it from any number of threads.
    """

    # Slots keep an idle connection small (an instance dictionary with this
    # many attributes costs 1.5 KiB); "__dict__" still lets applications
    # attach their own attributes, as they often do.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_aborted",
        "_awaiting_pong_since",
        "_blocking_reads",
        "_close_request",
        "_close_timer_armed",
        "_close_when_idle",
        "_closer",
        "_cond",
        "_cork_timer",
        "_dontwait",
        "_drained",
        "_eof_next",
        "_finalizer",
        "_fragmenting",
        "_handed_back",
        "_id",
        "_keepalive_due",
        "_keepalive_pings",
        "_last_frame_at",
        "_last_recv",
        "_lock",
        "_messages",
        "_out",
        "_pings",
        "_queued",
        "_reader",
        "_receiving",
        "_send_lock",
        "_skipping_broadcasts",
        "_socket_closed",
        "_started",
        "_tls_lock",
        "_waiting",
        "_want_write",
        "_watcher",
        "_writer",
        "close_timeout",
        "latency",
        "local_address",
        "logger",
        "max_queue",
        "ping_interval",
        "ping_timeout",
        "protocol",
        "remote_address",
        "request",
        "response",
        "socket",
        "subprotocol",
        "write_timeout",
    )

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        *,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        write_timeout: float | None = None,
        max_queue: int | None = 16,
        logger: logging.Logger | None = None,
    ) -> None:
        self.socket = sock
        self.protocol = protocol
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.write_timeout = write_timeout
        self.max_queue = max_queue
        self._id: uuid.UUID | None = None
        if logger is None:
            side = "server" if protocol.side is Side.SERVER else "client"
            logger = logging.getLogger(f"wssync.{side}")
        self.logger: logging.Logger = logger
        self.request: Request | None = None
        self.response: Response | None = None
        self.subprotocol: str | None = None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # Frames are written whole; Nagle's algorithm would only delay them.
            # (Here rather than in _start: a client makes its connection
            # while the server works on the handshake response.)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.remote_address: Any = sock.getpeername()
        except OSError:
            self.remote_address = None
        try:
            self.local_address: Any = sock.getsockname()
        except OSError:  # pragma: no cover
            self.local_address = None
        #: Seconds of the last keepalive round trip (0 before any).
        self.latency: float = 0.0

        self._lock = threading.Lock()
        # Created when a second thread first has to wait (see _condition).
        self._cond: threading.Condition | None = None
        self._waiting = 0  # threads waiting on _cond
        self._send_lock = threading.Lock()
        # Lists, not deques: both are short in practice (the message queue
        # is bounded by max_queue and DEFAULT_QUEUE_BYTES), and an empty
        # deque costs 600 bytes per idle connection.
        self._out: list[bytes | bytearray | memoryview] = []
        self._messages: list[_Message] = []
        self._receiving: _Message | None = None  # message whose fragments arrive
        self._queued = 0  # bytes + overhead of complete messages in _messages
        self._pings: dict[bytes, threading.Event] = {}  # user pings, in order
        # Keepalive pings in flight, in order: payload -> monotonic time sent.
        self._keepalive_pings: dict[bytes, float] = {}
        # When the first keepalive ping is due, until the watcher arms its
        # timer (see watch_events).
        self._keepalive_due: float | None = None
        # Monotonic time since when a keepalive pong is overdue, if one is.
        self._awaiting_pong_since: float | None = None
        self._reader: object | None = None  # the reading thread's Waker, or _WATCHER
        self._writer: Waker | None = None  # the waker of a send waiting on the socket
        self._fragmenting = False  # a fragmented message is being sent
        self._want_write = False  # output is left for the watcher to flush
        self._aborted = False  # the TCP connection was torn down
        self._socket_closed = False
        self._close_when_idle = False  # close the socket when roles are free
        # A close() call is under way: it closes the socket once the closing
        # handshake ends.
        self._closer = False
        # A close() that came before the connection went live (server shutdown).
        self._close_request: tuple[int, str] | None = None
        self._close_timer_armed = False
        self._started = False  # the opening handshake is done
        self._drained = False  # the last read took everything the socket had
        self._eof_next = False  # the peer's end of stream follows (see _dispatch)
        self._handed_back = False  # a refresh is pending: watch_events will run
        self._last_frame_at = 0.0  # monotonic time of the last frame received
        self._last_recv = 0.0  # monotonic time recv() last returned a message
        self._skipping_broadcasts = False
        self._cork_timer = False  # an _uncork() is scheduled
        # An SSL object must not be used by two threads at once (OpenSSL),
        # and the reading thread and the writing one are often different:
        # TLS reads and writes take this lock. They never block (the socket
        # is non-blocking), so neither waits long.
        self._tls_lock = threading.Lock() if isinstance(sock, ssl.SSLSocket) else None
        # Set before _start() by whoever owns the socket alone (not when it is
        # shared with a WSGI server): see _start.
        self._blocking_reads = False
        self._dontwait = 0  # flags for reads and writes that must not block
        self._watcher = get_watcher()
        self._finalizer = weakref.finalize(self, _close_socket, sock)

    def _set_socket_mode(self) -> None:
        """Make the socket blocking or not, for the life of the connection.

        Done by :meth:`_start`; a client does it sooner, while the server
        works on the handshake response. Sets :attr:`_dontwait`.
        """
        if self._dontwait:
            return  # done already
        if self._blocking_reads and _MSG_DONTWAIT and self._tls_lock is None:
            # The socket blocks, and every read or write that must not says
            # MSG_DONTWAIT: then a thread waiting for the next message can
            # block in recv() itself instead of poll() + recv(). One system
            # call less per message, and above all one GIL hand-over less:
            # with many busy connections, each thread coming back from a
            # system call queues for the GIL behind the others (S4: server
            # CPU 74 -> 53 us per round trip). Waits that something may have
            # to end early still poll (see _read); the others end by
            # shutdown(), as _abort() does.
            self.socket.setblocking(True)
            self._dontwait = _MSG_DONTWAIT
        else:
            self.socket.setblocking(False)

    def _start(self, leftover: bytes = b"") -> None:
        """Go live once the opening handshake is done.

        Args:
            leftover: Bytes read after the handshake response or request:
                the first frames, if the peer didn't wait.
        """
        self._set_socket_mode()
        with self._lock:
            self._started = True
            close_request = self._close_request
            if self.ping_interval is not None:
                self._keepalive_due = time.monotonic() + self.ping_interval
        if leftover:
            self._receive(memoryview(leftover))
        else:
            # The handshake read everything the peer had sent, and the peer
            # rarely sends at once: the first read waits before it reads
            # (blocks in recv() itself, where it may), rather than spend a
            # system call on an EAGAIN.
            self._drained = True
        # Lazy: the application nearly always reads or sends at once, and
        # waking the watcher for a new connection cost a thread switch and
        # GIL hand-overs (S5 server CPU 658 -> 594 us per connection). The
        # watcher still looks within LAZY_DELAY, inside the 100 ms promise
        # for answering pings.
        self._handed_back = True
        self._watcher.refresh(self, lazy=True)
        if close_request is not None:
            self._close_nowait(*close_request)

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> State:
        """The connection's :class:`~wssync.State`."""
        return self.protocol.state if self._started else State.CONNECTING

    @property
    def close_code(self) -> int | None:
        """The close code (RFC 6455 §7.1.5), ``None`` until the connection is closed."""
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason (RFC 6455 §7.1.6), ``None`` until closed."""
        return self.protocol.close_reason

    @property
    def id(self) -> uuid.UUID:
        """A unique identifier of the connection, for logs."""
        # Drawn on first use: most connections never need one, and each
        # uuid4() costs a system call and 100 bytes.
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def path(self) -> str:
        """The path of the handshake request."""
        return "" if self.request is None else self.request.path

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.state.name} "
            f"local={self.local_address!r} remote={self.remote_address!r} "
            f"id={self.id}>"
        )

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Data]:
        """Yield messages until the peer closes; stop quietly on a normal close."""
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    # -------------------------------------------------------------- receiving

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data:
        """Receive the next message.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes.
            decode: ``False`` returns text messages as bytes, ``True``
                decodes binary messages as UTF-8; ``None`` returns text as
                ``str`` and binary as ``bytes``.

        Returns:
            The message.

        Raises:
            TimeoutError: Nothing arrived in time; the connection stays usable.
            ConnectionClosed: The connection is closed (after the messages
                received before the close were returned).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        message = self._next_message(deadline, complete=True)
        chunks = message.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if message.text if decode is None else decode:
            return data.decode()
        return data

    def recv_streaming(self, decode: bool | None = None) -> Iterator[Data]:
        """Yield the fragments of the next message as they arrive.

        Args:
            decode: As for :meth:`recv`.

        Raises:
            ConnectionClosed: The connection closed before or during the message.
        """
        message = self._next_message(None, complete=False)
        text = message.text if decode is None else decode
        decoder = codecs.getincrementaldecoder("utf-8")() if text else None
        index = 0
        while True:
            with self._lock:
                chunks = message.chunks[index:]
                index += len(chunks)
                complete = message.complete and index == len(message.chunks)
            for chunk in chunks:
                # Empty fragments (like the final frame of a streamed
                # message) carry nothing, unless the message is empty.
                if chunk or len(message.chunks) == 1:
                    yield decoder.decode(chunk) if decoder is not None else chunk
            if complete:
                if decoder is not None:
                    decoder.decode(b"", final=True)
                return
            self._wait_for(functools.partial(message.has_more, index))

    def _next_message(self, deadline: float | None, *, complete: bool) -> _Message:
        """Take the next message off the queue, reading the socket as needed.

        Args:
            deadline: When to give up with :exc:`TimeoutError`.
            complete: Wait for the whole message (``recv()``), or only for
                its first fragment (``recv_streaming()``).
        """
        while True:
            with self._lock:
                messages = self._messages  # _has_message(), inlined
                if messages and (not complete or messages[0].complete):
                    return self._pop_message()
                # The common wait, inlined: nobody else reading, nothing to
                # flush, nothing to fail, and a wait that may block in recv().
                blocking = (
                    self._reader is None
                    and not self._out
                    and not self._finished()
                    and self.protocol.pending_failure is None
                    and self._can_block_in_recv(deadline)
                )
                if blocking:
                    self._reader = _BLOCKED
            if blocking:
                message = self._read_blocking_for(complete)
                if message is not None:
                    return message
            else:
                self._wait_for(functools.partial(self._has_message, complete), deadline)

    def _has_message(self, complete: bool) -> bool:
        """Whether a message can be taken. Called with the lock held."""
        return bool(self._messages) and (not complete or self._messages[0].complete)

    def _pop_message(self) -> _Message:
        """Take the first message off the queue. Called with the lock held."""
        was_paused = self._paused()
        message = self._messages.pop(0)
        if message.complete:
            self._queued -= message.size + MESSAGE_OVERHEAD
        else:
            message.taken = True
        now = self._last_recv = time.monotonic()
        if was_paused:
            # Reading resumes. While it was paused, the peer's frames (its
            # pongs too) waited unread in our socket: count that time as
            # life, or a keepalive check right now, before they are read,
            # would see only the last frame read before the pause.
            self._last_frame_at = now
            self._watcher.refresh(self, lazy=True)
        return message

    def _wait_for(
        self, ready: Callable[[], bool], deadline: float | None = None
    ) -> None:
        """Read, or wait for the thread that reads, until ``ready()`` holds.

        ``ready`` is checked with the lock held.

        Raises:
            ConnectionClosed: The connection ended first.
            TimeoutError: The deadline passed first.
        """
        while True:
            with self._lock:
                while True:
                    if ready():
                        return
                    if self._finished():
                        raise self._closed_exception()
                    if self.protocol.pending_failure is not None:
                        # The application took what came before the bad
                        # input; nothing more will come: close now.
                        waker = None
                        break
                    remaining = (
                        None if deadline is None else deadline - time.monotonic()
                    )
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError("timed out")
                    if self._reader is None:
                        waker = self._reader = thread_waker()
                        break
                    # Another thread reads: it notifies when it is done.
                    self._waiting += 1
                    try:
                        self._condition().wait(remaining)
                    finally:
                        self._waiting -= 1
            if waker is None:
                self._apply_pending_failure()
                continue
            if self._out:
                # Replies held back while messages were waiting (see _cork)
                # leave before this thread waits for more.
                self._flush_nowait()
            try:
                self._read(waker, deadline)
            finally:
                self._release_reader()

    def _read(self, waker: Waker, deadline: float | None) -> None:
        """Read once from the socket (waiting for data if needed) and process it.

        Called by the thread holding the reader role. Returns after one read,
        a time-out or a wake-up; the caller checks which.
        """
        sock = self.socket
        if self._can_block_in_recv(deadline):
            data, more, error = self._recv_blocking()
            self._receive(data, error, more)
            _done_with(more)
            return
        # After a read that emptied the socket, wait first, rather than
        # spend a system call on a read that would only say EAGAIN.
        wait = self._drained and not (self._tls_lock and self._tls_pending())
        while not self._aborted:
            if wait:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                if not wait_socket(sock, False, remaining, waker):
                    return
            if self._read_available(sock):
                if not self._eof_next:
                    return
                # The server answered our close frame: its end of stream
                # follows at once (see _dispatch). Read it in this call,
                # rather than go back to the caller's checks first.
                self._eof_next = False
                wait = False
                continue
            wait = True

    def _can_block_in_recv(self, deadline: float | None) -> bool:
        """Whether a wait for data may block in recv() itself (see _start).

        Only a wait that nothing but the end of the connection must end, and
        _abort() ends it with shutdown(); after a read that emptied the
        socket; not on the main thread, which polls its waker for Ctrl-C.
        """
        return (
            deadline is None
            and self._drained
            and self._dontwait != 0
            and threading.get_ident() != _MAIN_THREAD_ID
        )

    def _recv_blocking(
        self,
    ) -> tuple[bytes | None, memoryview | None, OSError | None]:
        """Wait in recv() for data.

        Returns:
            ``(data, more, None)``, to feed in this order, either of them
            ``None`` for nothing; ``(None, None, None)`` at the end of the
            stream; ``(None, None, error)`` if the read failed. ``more`` is a
            view of a pooled buffer: give it to :func:`_done_with` once fed.
        """
        sock = self.socket
        try:
            data = sock.recv(BLOCKING_READ_SIZE)
        except OSError as exc:
            return None, None, exc
        if len(data) < BLOCKING_READ_SIZE:
            self._drained = True
            return data or None, None, None
        # A full read may have left more: take it now, without waiting, for
        # the core to get in the same pass (not in a second trip through
        # the reading loop).
        buffer = _take_buffer()
        view = memoryview(buffer)
        try:
            more = sock.recv_into(view[BLOCKING_READ_SIZE:], 0, self._dontwait)
        except OSError as exc:
            # Nothing more yet (EAGAIN); or an error, that the next read,
            # which then doesn't wait, reports.
            self._drained = isinstance(exc, BlockingIOError)
            more = 0
        else:
            self._drained = more < len(buffer) - BLOCKING_READ_SIZE
        if not more:
            _give_back(buffer)
            return data, None, None
        if more <= JOIN_READS_LIMIT:
            # Frames that span both reads are parsed whole; the core copies
            # this little anyway.
            buffer[:BLOCKING_READ_SIZE] = data
            return None, view[: BLOCKING_READ_SIZE + more], None
        # Likely a big frame: the core copies its payload from the buffer
        # straight into place.
        return data, view[BLOCKING_READ_SIZE : BLOCKING_READ_SIZE + more], None

    def _read_blocking_for(self, complete: bool) -> _Message | None:
        """Block in recv(), process what came, and take a message if one is ready.

        The fast path of :meth:`_next_message` (a whole round trip with three
        lock sections instead of six): the caller took the reader role as
        ``_BLOCKED``. Returns ``None`` if no message is ready yet.
        """
        data, more, error = self._recv_blocking()
        message = None
        with self._lock:
            self._reader = None
            output, closing = self._feed(data, error, more)
            if self._has_message(complete):
                message = self._pop_message()
            self._notify()
            release = self._close_when_idle
        _done_with(more)
        self._after_feed(output, closing)
        self._after_reading(release)
        return message

    def _read_available(self, sock: socket.socket) -> bool:
        """Read once without waiting and process it; ``False`` if nothing came."""
        buffer = _take_buffer()
        try:
            try:
                tls = self._tls_lock
                if tls is None:
                    # 0: the whole buffer; MSG_DONTWAIT on a blocking socket.
                    n = sock.recv_into(buffer, 0, self._dontwait)
                else:
                    with tls:
                        n = sock.recv_into(buffer)
            except _WANT_READ:
                return False
            except ssl.SSLWantWriteError:  # pragma: no cover - TLS renegotiation
                return False
            except OSError as exc:
                self._receive(None, exc)
                return True
            self._drained = n < len(buffer)
            self._receive(memoryview(buffer)[:n] if n else None)
            return True
        finally:
            _give_back(buffer)

    def _receive(
        self,
        data: bytes | memoryview | None,
        error: BaseException | None = None,
        more: memoryview | None = None,
    ) -> None:
        """Feed bytes (or the end of the stream) to the core and act on the events."""
        with self._lock:
            output, closing = self._feed(data, error, more)
        self._after_feed(output, closing)

    def _feed(
        self,
        data: bytes | memoryview | None,
        error: BaseException | None,
        more: memoryview | None = None,
    ) -> tuple[int, bool]:
        """The part of :meth:`_receive` under the lock; called with it held.

        ``more``: bytes that came right after ``data`` (see _recv_blocking);
        neither of them: the end of the stream.
        Returns what :meth:`_after_feed` needs: whether output is due, and
        whether the closing handshake just started.
        """
        if self._aborted:
            return 0, False
        if data is None and more is None:
            if error is not None and self.logger.isEnabledFor(logging.DEBUG):
                self.logger.debug("connection lost: %r", error)
            self.protocol.receive_eof()
        else:
            if data is not None:
                self.protocol.receive_data(data)
            if more is not None:
                self.protocol.receive_data(more)
        self._dispatch()
        if self.protocol.pending_failure is not None and any(
            message.complete for message in self._messages
        ):
            # The peer's input turned bad after valid messages: give the
            # application a chance to answer those before the close
            # frame goes out (the core defers failing until the next
            # data_to_send). Only for complete messages: the start of
            # an unfinished one is nothing the application can take.
            # Bounded: the watcher fails it soon anyway.
            output = 0
            self._watcher.call_at(
                time.monotonic() + PENDING_FAILURE_DELAY,
                self._apply_pending_failure,
            )
        else:
            output = self._take_output()
        return output, self._closing_timer_needed()

    def _after_feed(self, output: int, closing: bool) -> None:
        """Write the output :meth:`_feed` produced; arm the closing timer."""
        if output:
            self._flush_nowait()
        if closing:
            self._arm_close_timer()

    def _condition(self) -> threading.Condition:
        """The condition to wait on with the lock held, made on first use."""
        # Most connections only ever have one thread at a time in them: a
        # Condition (with its deque of waiters) would be 1 KiB per idle
        # connection for nothing.
        if self._cond is None:
            self._cond = threading.Condition(self._lock)
        return self._cond

    def _notify(self) -> None:
        """Wake the threads waiting on ``_cond``. Called with the lock held."""
        # Condition.notify_all is Python code: skip it when nobody waits,
        # which is the common case on the hot path.
        if self._waiting:
            assert self._cond is not None
            self._cond.notify_all()

    def _dispatch(self) -> None:
        """Handle the events the core produced. Called with the lock held."""
        events = self.protocol.events_received()
        if events:
            self._last_frame_at = time.monotonic()
        for frame in events:
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY:
                message = _Message(opcode is _TEXT, frame.data, frame.fin)
                self._messages.append(message)
                if message.complete:
                    self._queued += message.size + MESSAGE_OVERHEAD
                else:
                    self._receiving = message
            elif opcode is _CONT:
                receiving = self._receiving
                if receiving is None:  # pragma: no cover - the core forbids it
                    continue
                receiving.chunks.append(frame.data)
                receiving.size += len(frame.data)
                if frame.fin:
                    receiving.complete = True
                    self._receiving = None
                    if not receiving.taken:
                        self._queued += receiving.size + MESSAGE_OVERHEAD
            elif opcode is _PONG:
                if frame.data in self._keepalive_pings:
                    self._acknowledge_keepalive(frame.data)
                else:
                    self._acknowledge_pings(frame.data)
            elif (
                opcode is _CLOSE
                and self.protocol.side is Side.CLIENT
                and not self.protocol.close_rcvd_then_sent
            ):
                # The server answered our close frame, and closes the TCP
                # connection right after (RFC 6455 §7.1.1): its end of stream
                # has likely come already. Read it without waiting first.
                self._drained = False
                self._eof_next = True
        self._notify()

    def _apply_pending_failure(self) -> None:
        """Send the close frame of a failure the core deferred (see _receive)."""
        with self._lock:
            if self.protocol.pending_failure is None or self._aborted:
                return
            self._take_output()
            closing = self._closing_timer_needed()
        self._flush_nowait()
        if closing:
            self._arm_close_timer()

    def _closing_timer_needed(self) -> bool:
        """Whether the closing handshake just started. Called with the lock held."""
        return (
            not self._close_timer_armed
            and self.close_timeout is not None
            and self.protocol.close_expected()
        )

    def _arm_close_timer(self) -> None:
        """Bound the closing handshake that the peer or the core started.

        RFC 6455 §7.1.1: the TCP connection should close once the handshake
        is done; a peer that never closes it must not pin a thread in recv().
        """
        with self._lock:
            if self._close_timer_armed or self.close_timeout is None:
                return
            self._close_timer_armed = True
        self._watcher.call_at(
            time.monotonic() + self.close_timeout, self._close_timed_out
        )

    def _close_timed_out(self) -> None:
        with self._lock:
            finished = self._finished()
        if not finished:
            self.logger.debug("closing handshake timed out; dropping the connection")
            self._abort(None)

    def _paused(self) -> bool:
        """Whether the watcher must stop reading for now (back-pressure).

        Reading pauses once ``max_queue`` messages wait *and* they hold at
        least ``max_size`` bytes: a slow application with many small
        messages keeps its connection alive (pings get answered) while the
        memory held stays bounded.
        """
        max_queue = self.max_queue
        return (
            max_queue is not None
            and len(self._messages) >= max_queue
            and self._queued >= (self.protocol.max_size or DEFAULT_QUEUE_BYTES)
        )

    def _finished(self) -> bool:
        """Whether nothing more can be received. Called with the lock held."""
        return self._aborted or self.protocol.state is _CLOSED

    def _closed_exception(self) -> ConnectionClosed:
        return self.protocol.close_exc()

    def _release_reader(self) -> None:
        with self._lock:
            self._reader = None
            self._notify()
            release = self._close_when_idle
        self._after_reading(release)

    def _after_reading(self, release: bool) -> None:
        """Follow up on a thread giving up the reader role.

        ``release``: closing the socket waited for that.
        """
        if release:
            self._release_socket()
        elif not self._handed_back:
            # The watcher reads if the application doesn't come back soon.
            self._handed_back = True
            self._watcher.refresh(self, lazy=True)

    # ---------------------------------------------------------------- watcher

    def watch_socket(self) -> socket.socket:
        """The socket, for the watcher."""
        return self.socket

    def watch_events(self) -> int:
        """The selector events the watcher should wait for on this connection."""
        self._handed_back = False
        with self._lock:
            if self._socket_closed or self._aborted:
                return 0
            due = self._keepalive_due
            if due is not None:
                # The keepalive timer is armed here, at the watcher's first
                # look (within LAZY_DELAY of _start, which asks for it),
                # rather than in _start: a connection that closes sooner
                # never costs a timer. At a thousand connections a second,
                # the heap held tens of thousands of dead timers, and each
                # new one took 4 us to push (C3).
                self._keepalive_due = None
                self._watcher.call_at(due, self._keepalive)
            events = 0
            since_recv = time.monotonic() - self._last_recv
            if self._reader is None and since_recv < LAZY_DELAY:
                # The application reads; it will likely be back in recv()
                # at once. Reading now would only hand its messages over from
                # the watcher thread: look again once it has been away for
                # LAZY_DELAY (pings are still answered within twice that).
                self._watcher.call_at(
                    self._last_recv + LAZY_DELAY,
                    functools.partial(self._watcher.refresh, self),
                )
            elif (
                self._reader is None
                and self.protocol.state is not State.CLOSED
                and not self._paused()
            ):
                events |= selectors.EVENT_READ
            if self._want_write:
                events |= selectors.EVENT_WRITE
            return events

    def on_readable(self) -> None:
        """Read without blocking, in the watcher thread."""
        with self._lock:
            if self._reader is not None or self._socket_closed or self._finished():
                return
            self._reader = _WATCHER
        try:
            sock = self.socket
            # Decrypted bytes may wait inside the TLS object, invisible to
            # the selector: read them too.
            while (
                self._read_available(sock)
                and self._tls_lock is not None
                and self._tls_pending()
            ):
                pass
        finally:
            with self._lock:
                self._reader = None
                self._notify()
                release = self._close_when_idle
            if release:
                self._release_socket()

    def on_writable(self) -> None:
        """Flush pending output without blocking, in the watcher thread."""
        self._flush_nowait()

    # ---------------------------------------------------------------- sending

    def send(self, message: Data | Iterable[Data], text: bool | None = None) -> None:
        """Send a message.

        Args:
            message: ``str`` is sent as a text frame, bytes-like as a binary
                frame; an iterable of ``str`` or bytes-like is sent as one
                fragmented message.
            text: ``True`` sends bytes (already UTF-8) as text, ``False``
                sends a ``str`` as binary.

        Raises:
            ConnectionClosed: The connection is closed.
            TypeError: The message has an unsupported type.
        """
        # _encode(), inlined: this is the hot path of every message sent.
        data: bytes | bytearray | memoryview
        if isinstance(message, str):
            is_text, data = text is not False, message.encode()
        elif isinstance(message, (bytes, bytearray, memoryview)):
            is_text, data = bool(text), message
        elif isinstance(message, Iterable):
            self._send_fragments(iter(message), text)
            return
        else:
            raise TypeError(f"message has unsupported type {type(message).__name__}")
        corked = False
        self._send_lock.acquire()
        try:
            with self._lock:
                protocol = self.protocol
                if protocol.state is not _OPEN or self._aborted:
                    raise self._closed_exception()
                if is_text:
                    protocol.send_text(data)
                else:
                    protocol.send_binary(data)
                # Only when messages wait can the answer be held back.
                corked = bool(self._messages) and self._cork()
                if self._out or corked:
                    self._take_output()
                    chunks = None
                else:
                    chunks = protocol.data_to_send()
            if not corked and (chunks is None or not self._write_now(chunks)):
                self._flush()
        finally:
            self._send_lock.release()
            if (self._out and not corked) or self._close_when_idle:
                self._after_send()

    def _send_fragments(self, chunks: Iterator[Data], text: bool | None) -> None:
        # Each fragment leaves as soon as the iterable yields it (a slow
        # generator streams), so the end is an empty final frame.
        try:
            first = next(chunks)
        except StopIteration:
            return
        is_text, data = self._encode(first, text)
        self._send_lock.acquire()
        try:
            with self._lock:
                self._check_open()
                if is_text:
                    self.protocol.send_text(data, fin=False)
                else:
                    self.protocol.send_binary(data, fin=False)
                self._fragmenting = True
                self._take_output()
            self._flush()
            for chunk in chunks:
                chunk_is_text, data = self._encode(chunk, text)
                if chunk_is_text != is_text:
                    raise TypeError(
                        "all fragments of a message must have the same type"
                    )
                with self._lock:
                    self._check_open()
                    self.protocol.send_continuation(data, fin=False)
                    self._take_output()
                self._flush()
            with self._lock:
                self._check_open()
                self.protocol.send_continuation(b"", fin=True)
                self._fragmenting = False
                self._take_output()
            self._flush()
        except BaseException:
            with self._lock:
                unfinished = self._fragmenting
                self._fragmenting = False
                if unfinished and self.protocol.state is State.OPEN:
                    # The peer would wait for the end of the message forever:
                    # fail the connection (RFC 6455 §7.1.7).
                    self.protocol.fail(1011, "sending a fragmented message failed")
                    self._take_output()
            raise
        finally:
            self._send_lock.release()
            self._after_send()

    @staticmethod
    def _encode(message: object, text: bool | None) -> tuple[bool, bytes]:
        if isinstance(message, str):
            return text is not False, message.encode()
        if isinstance(message, (bytes, bytearray, memoryview)):
            return bool(text), message  # type: ignore[return-value]
        raise TypeError(f"message has unsupported type {type(message).__name__}")

    def _check_open(self) -> None:
        """Raise if messages can't be sent. Called with the lock held."""
        if self.protocol.state is not State.OPEN or self._aborted:
            raise self._closed_exception()

    def _take_output(self) -> int:
        """Move the core's output to the output queue. Called with the lock held."""
        chunks = self.protocol.data_to_send()
        if (
            self._closer
            and chunks
            and chunks[-1] is _EOF
            and self.protocol.state is _CLOSED
        ):
            # The peer's end of stream came, and ends the closing handshake:
            # close() closes the socket right after, and the FIN of that
            # does the half-close's job, without a shutdown() call. (Not
            # before: a server closes its side first, RFC 6455 §7.1.1.)
            chunks.pop()
        self._out.extend(chunks)
        return len(chunks)

    def _cork(self) -> bool:
        """Whether to hold this message back, to leave with the next ones.

        Called with the lock held, by :meth:`send`. When the peer sent
        several messages at once and the application answers each,
        writing each answer with its own system call costs more than all
        the rest (a loopback TCP send is several microseconds). So while
        complete messages wait in the queue and the application is taking
        them one after the other (it returned from :meth:`recv` just
        now), answers gather in the output queue. They leave, in one
        sendmsg(), when a thread is about to wait for more input (see
        :meth:`_wait_for`), when :data:`CORK_CHUNKS` are held, or at the
        latest after :data:`CORK_DELAY` (the watcher flushes them).
        """
        messages = self._messages
        if not (messages and messages[0].complete) or len(self._out) >= CORK_CHUNKS:
            return False
        now = time.monotonic()
        if now - self._last_recv > CORK_WINDOW:
            # The application isn't going through its queue right now
            # (a producer that never receives, say): no reason to wait.
            return False
        if not self._cork_timer:
            self._cork_timer = True
            self._watcher.call_at(now + CORK_DELAY, self._uncork)
        return True

    def _uncork(self) -> None:
        """Write the replies held back by :meth:`_cork`; in the watcher thread."""
        with self._lock:
            self._cork_timer = False
        if self._out:
            self._flush_nowait()

    def _write_now(self, chunks: Sequence[bytes | bytearray | memoryview]) -> bool:
        """Write a message's frames at once; ``False`` if some are left queued.

        The fast path of :meth:`send` when nothing else is queued: one
        system call and no lock, instead of going through the output queue.
        The caller holds ``_send_lock`` and passes what the core produced
        (with nothing queued before it). Whatever can't be written now goes
        to the front of the queue, before output queued meanwhile (a pong
        from the reading thread, say), for :meth:`_flush` to finish.
        """
        sent = 0
        if _EOF not in chunks and not self._socket_closed:
            try:
                sent = self._write(chunks)
            except _WANT_WRITE:
                pass
            except OSError as exc:
                with self._lock:
                    self._out[:0] = chunks
                self._abort(exc)
                return False
            if sent == sum(map(len, chunks)):
                return True
        with self._lock:
            self._out[:0] = chunks
            self._forget_sent(sent)
        return False

    def _flush(self, deadline: float | None = None) -> None:
        """Write the whole output queue, waiting for the socket as needed.

        The caller holds ``_send_lock``.

        Args:
            deadline: When to give up with :exc:`TimeoutError`, leaving the
                rest queued. Without it, ``write_timeout`` bounds the wait and
                running out of it drops the connection.

        Raises:
            ConnectionClosedError: The connection broke or was dropped.
            TimeoutError: ``deadline`` passed.
        """
        write_deadline = None
        if deadline is None and self.write_timeout is not None:
            write_deadline = deadline = time.monotonic() + self.write_timeout
        while True:
            blocked = self._flush_once()
            with self._lock:
                if self._aborted or self._socket_closed:
                    if self._out:
                        raise self._closed_exception()
                    return
                if not blocked:
                    if not self._out:
                        return
                    continue
                waker = self._writer = thread_waker()
            try:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if deadline is write_deadline:
                        error = TimeoutError("timed out writing to the peer")
                        self._abort(error)
                        raise self._closed_exception() from error
                    raise TimeoutError("timed out writing to the peer")
                wait_socket(self.socket, True, remaining, waker)
            finally:
                with self._lock:
                    self._writer = None

    def _flush_once(self) -> bool:
        """Write without waiting; return whether the socket was full.

        The caller holds ``_send_lock``.
        """
        sock = self.socket
        while True:
            with self._lock:
                if not self._out or self._aborted or self._socket_closed:
                    return False
                chunks = self._out[:_IOV_MAX]
            try:
                if chunks[0] is _EOF:
                    with self._lock:
                        del self._out[0]
                    sock.shutdown(socket.SHUT_WR)
                    continue
                sent = self._write(chunks)
            except _WANT_WRITE:
                return True
            except OSError as exc:
                self._abort(exc)
                return False
            with self._lock:
                if self._forget_sent(sent):
                    return True

    def _forget_sent(self, sent: int) -> bool:
        """Drop ``sent`` written bytes off the output queue; ``True`` if a chunk is cut.

        Called with the lock held.
        """
        out = self._out
        done = 0
        for chunk in out:
            if sent < len(chunk) or chunk is _EOF:
                break
            sent -= len(chunk)
            done += 1
        del out[:done]
        if sent:
            out[0] = memoryview(out[0])[sent:]
            return True
        return False

    def _tls_pending(self) -> int:
        """Decrypted bytes waiting inside the TLS object (TLS sockets only)."""
        assert self._tls_lock is not None
        with self._tls_lock:
            return self.socket.pending()  # type: ignore[attr-defined, no-any-return]

    def _write(self, chunks: Sequence[bytes | bytearray | memoryview]) -> int:
        """Write some of ``chunks`` with one system call; return the bytes written.

        Never blocks: the socket is non-blocking, or blocking with
        ``MSG_DONTWAIT`` on every write (see _start).
        """
        if len(chunks) > 1 and _EOF in chunks:
            chunks = chunks[: chunks.index(_EOF)]
        sock = self.socket
        tls = self._tls_lock
        if tls is not None:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            with tls:
                return sock.send(data)
        if len(chunks) == 1:
            return send_small(sock, chunks[0], self._dontwait)
        if not hasattr(sock, "sendmsg"):  # pragma: no cover - Windows
            return sock.send(b"".join(chunks))
        # Header and payload leave in one system call, without a copy.
        return sock.sendmsg(chunks, (), self._dontwait)

    def _flush_nowait(self) -> None:
        """Write what can be written without blocking; never waits for a lock.

        If another thread holds ``_send_lock``, it writes the queue before
        letting go and looks at it again after (``_after_send``).
        """
        while self._send_lock.acquire(blocking=False):
            try:
                blocked = self._flush_once()
            finally:
                self._send_lock.release()
            with self._lock:
                pending = (
                    bool(self._out) and not self._aborted and not self._socket_closed
                )
                want_write = blocked and pending
                changed = want_write != self._want_write
                self._want_write = want_write
                release = self._close_when_idle
            if changed:
                self._watcher.refresh(self)
            if release:
                self._release_socket()
            if blocked or not pending:
                return

    def _after_send(self) -> None:
        """Look at the output queue again after letting go of ``_send_lock``."""
        if self._out:
            self._flush_nowait()
        elif self._close_when_idle:
            self._release_socket()

    def _broadcast(self, is_text: bool, data: bytes, limit: int) -> None:
        """Queue a message and write what can be written now; see :func:`broadcast`."""
        with self._lock:
            if self.protocol.state is not State.OPEN or self._aborted:
                return
            if self._fragmenting:
                reason = "it is sending a fragmented message"
            elif sum(map(len, self._out)) > limit:
                reason = "its peer isn't reading"
            else:
                if is_text:
                    self.protocol.send_text(data)
                else:
                    self.protocol.send_binary(data)
                self._take_output()
                reason = ""
            # Log when skipping starts and when it ends, not every message:
            # a stalled peer would flood the log.
            changed = bool(reason) != self._skipping_broadcasts
            self._skipping_broadcasts = bool(reason)
        if changed:
            if reason:
                self.logger.warning("skipping broadcasts to %s: %s", self.id, reason)
            else:
                self.logger.info("broadcasts to %s resumed", self.id)
        if not reason:
            self._flush_nowait()

    # ------------------------------------------------------------ ping / pong

    def ping(self, data: Data | None = None) -> threading.Event:
        """Send a ping.

        Args:
            data: Payload; four random bytes by default. Text is UTF-8 encoded.

        Returns:
            An event that is set when the matching pong arrives (a pong also
            acknowledges every earlier ping).

        Raises:
            ConnectionClosed: The connection is closed.
            RuntimeError: A ping with the same payload is already waiting.
        """
        if data is None:
            payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
        event = threading.Event()
        self._send_lock.acquire()
        try:
            with self._lock:
                self._check_open()
                self._register_ping(payload, event)
                self.protocol.send_ping(payload)
                self._take_output()
            self._flush()
        finally:
            self._send_lock.release()
            self._after_send()
        return event

    def _register_ping(self, payload: bytes, event: threading.Event) -> None:
        if payload in self._pings:
            raise RuntimeError("already waiting for a pong with the same data")
        self._pings[payload] = event

    def _acknowledge_pings(self, payload: bytes) -> None:
        """Set the events of the ping matching ``payload`` and of all earlier ones."""
        if payload not in self._pings:
            return
        for key in list(self._pings):
            self._pings.pop(key).set()
            if key == payload:
                break

    def _acknowledge_keepalive(self, payload: bytes) -> None:
        """Record the round trip of a keepalive ping. Called with the lock held."""
        sent = self._keepalive_pings
        self.latency = time.monotonic() - sent[payload]
        # A pong answers the ping and, implicitly, every earlier one.
        for key in list(sent):
            del sent[key]
            if key == payload:
                break
        self._awaiting_pong_since = None

    def pong(self, data: Data = b"") -> None:
        """Send an unsolicited pong (a unidirectional heartbeat).

        Raises:
            ConnectionClosed: The connection is closed.
        """
        payload = data.encode() if isinstance(data, str) else bytes(data)
        self._send_lock.acquire()
        try:
            with self._lock:
                self._check_open()
                self.protocol.send_pong(payload)
                self._take_output()
            self._flush()
        finally:
            self._send_lock.release()
            self._after_send()

    def _keepalive(self) -> None:
        """Send a keepalive ping; runs in the watcher thread, never blocks.

        Only the last few keepalive pings are remembered, so a peer that is
        slow to answer costs no memory over time; ``_awaiting_pong_since``
        says since when a pong is due.
        """
        if self.ping_interval is None:
            return
        payload = os.urandom(4)
        with self._lock:
            if self.protocol.state is not State.OPEN or self._aborted:
                return
            sent = self._keepalive_pings
            sent[payload] = time.monotonic()
            if len(sent) > KEEPALIVE_PINGS_TRACKED:
                del sent[next(iter(sent))]
            self.protocol.send_ping(payload)
            self._take_output()
            now = time.monotonic()
            start_check = self._awaiting_pong_since is None
            if start_check:
                self._awaiting_pong_since = now
        self._flush_nowait()
        if start_check and self.ping_timeout is not None:
            self._watcher.call_at(now + self.ping_timeout, self._check_pong)
        self._watcher.call_at(now + self.ping_interval, self._keepalive)

    def _check_pong(self) -> None:
        """Fail the connection if the peer shows no sign of life.

        The pong is the expected sign, but not the only one: while we don't
        read (back-pressure from a slow application) the pong sits unread in
        our socket, and while our output is stuck the ping may not even have
        left. Then any frame from the peer (its own keepalive pings, say)
        within the last ping interval and timeout proves it alive; only
        silence, or output stuck beyond ``write_timeout``, ends it.
        """
        assert self.ping_timeout is not None
        with self._lock:
            if self._awaiting_pong_since is None or self._finished():
                return
            now = time.monotonic()
            window = self.ping_timeout + (self.ping_interval or 0)
            alive = (
                self._paused() or bool(self._out) or self._last_frame_at >= now - window
            )
        if alive:
            self._watcher.call_at(now + self.ping_timeout, self._check_pong)
            return
        self.logger.info("keepalive ping timeout; closing connection")
        self._fail(1011, "keepalive ping timeout")

    # ---------------------------------------------------------------- closing

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Perform the closing handshake and close the TCP connection.

        Waits at most ``close_timeout`` for the handshake, then drops the
        connection. Idempotent and safe from any thread; threads blocked in
        :meth:`recv` get :exc:`~wssync.ConnectionClosedOK`.

        Args:
            code: The close code.
            reason: The close reason.
        """
        deadline = (
            None
            if self.close_timeout is None
            else time.monotonic() + self.close_timeout
        )
        with self._lock:
            self._closer = True
            if deadline is not None:
                # This call bounds the closing handshake: no timer needed.
                self._close_timer_armed = True
            if self.protocol.state is State.OPEN and not self._aborted:
                # RFC 6455 §5.4: a close frame may come between the fragments
                # of a message another thread is sending.
                self.protocol.send_close(code, reason)
                self._take_output()
        try:
            self._flush_for_close(deadline)
            self._wait_for(self._finished, deadline)
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            with self._lock:
                finished = self._finished()
            if not finished:
                self._abort(None)
            self._release_socket()

    def _close_nowait(self, code: int, reason: str) -> None:
        """Start the closing handshake without waiting (for server shutdown).

        Before the connection is live, the close waits until it is.
        """
        with self._lock:
            if not self._started:
                self._close_request = (code, reason)
                return
            if self.protocol.state is State.OPEN and not self._aborted:
                self.protocol.send_close(code, reason)
                self._take_output()
        self._flush_nowait()

    def _wait_finished(self, deadline: float) -> None:
        """Wait until the connection ends, or drop it at ``deadline``.

        Doesn't read: the handler's thread or the watcher does.
        """
        with self._lock:
            while not self._finished():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._waiting += 1
                try:
                    self._condition().wait(remaining)
                finally:
                    self._waiting -= 1
            finished = self._finished()
        if not finished:
            self._abort(None)

    def _flush_for_close(self, deadline: float | None) -> None:
        timeout = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._send_lock.acquire(timeout=timeout):
            # Another thread's send is stuck on a peer that stopped reading.
            raise TimeoutError("timed out sending the close frame")
        try:
            with self._lock:
                # The usual case: the close frame alone. It leaves at once,
                # as send() writes a message, without the queue's loop.
                alone = len(self._out) == 1 and not self._aborted
                if alone:
                    chunks = [self._out.pop()]
            if not alone or not self._write_now(chunks):
                self._flush(deadline)
        finally:
            self._send_lock.release()
            self._after_send()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7) and drop it; never blocks."""
        with self._lock:
            if self.protocol.state is State.OPEN and not self._aborted:
                self.protocol.fail(code, reason)
                self._take_output()
        self._flush_nowait()
        self._abort(None)

    def _abort(self, error: BaseException | None) -> None:
        """Tear down the TCP connection and wake every thread waiting on it."""
        with self._lock:
            if self._aborted:
                return
            self._aborted = True
            if self.protocol.state is not State.CLOSED:
                self.protocol.receive_eof()
                self.protocol.events_received()
                self.protocol.data_to_send()
            reader, writer = self._reader, self._writer
            self._notify()
        if error is not None and self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("connection dropped: %r", error)
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        for waker in (reader, writer):
            if isinstance(waker, Waker):
                waker.wake()
        self._watcher.refresh(self)

    def _release_socket(self) -> None:
        """Close the socket now, or as soon as no thread reads or writes it."""
        with self._lock:
            if self._socket_closed:
                return
            if self._reader is not None or self._send_lock.locked():
                self._close_when_idle = True
                return
            # Writers check this flag under the lock before each write.
            self._socket_closed = True
        self._finalizer()
        if not self._handed_back:
            # (Else a refresh is pending: the watcher will look anyway, and
            # see the socket closed.)
            self._watcher.refresh(self)


#: Unsent bytes beyond which :func:`broadcast` considers a peer stalled and
#: skips it: enough to ride out a busy moment of a healthy peer, small
#: enough that a thousand stalled peers cost a bounded amount of memory.
BROADCAST_LIMIT = 2**20


def broadcast(
    connections: Iterable[Connection], message: Data, *, limit: int = BROADCAST_LIMIT
) -> None:
    """Send a message to many connections without ever waiting for one.

    Each connection gets the message unless it is closed, is in the middle
    of sending a fragmented message, or has more than ``limit`` bytes of
    earlier output that its peer hasn't read yet: a peer that stopped
    reading is skipped (and logged), never waited for. The frame is built
    and compressed per connection, since compression contexts differ.

    Args:
        connections: The connections.
        message: Text or bytes.
        limit: Unsent bytes beyond which a connection is skipped.
    """
    is_text, data = Connection._encode(message, None)
    for connection in connections:
        connection._broadcast(is_text, data, limit)
