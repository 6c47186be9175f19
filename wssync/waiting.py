"""Interruptible waits on sockets.

Every blocking wait in wssync is a poll on the socket *and* on a wake-up
socket, so another thread can always end it: closing a socket from another
thread is not a reliable wake-up on every OS (architecture principle 6).

Each thread gets its own :class:`Waker`, created on first use and reused for
every connection the thread waits on: a connection records the waker of the
thread currently blocked on it, and wakes it to abort the wait.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import ssl
import threading
import time

__all__ = [
    "Waker",
    "finish_connect",
    "recv_by",
    "send_all_by",
    "start_connect",
    "thread_waker",
    "time_left",
    "wait_socket",
]


class Waker:
    """A socket pair whose reading end becomes readable when :meth:`wake` is called."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._fd = self._reader.fileno()
        self.signal_fd = self._writer.fileno()
        # Made by (and for) one thread: whether it is the main thread, which
        # Python runs signal handlers in.
        self.on_main_thread = threading.current_thread() is _main_thread
        if hasattr(select, "poll"):
            # Kept with the waker registered: each wait only adds the socket.
            self.poller = select.poll()
            self.poller.register(self._fd, select.POLLIN)
            # The socket registered by the last wait, and for which events:
            # left registered, since the next wait is most often on the same
            # socket (a poll object is a user-space table: no system call).
            self.polled_fd = -1
            self.polled_events = 0

    def fileno(self) -> int:
        """The file descriptor to poll for readability."""
        return self._fd

    def wake(self) -> None:
        """Make the next (or current) wait on this waker return."""
        # A full buffer already guarantees a wake-up; a closed one means the
        # waiting thread is gone.
        with contextlib.suppress(OSError):
            self._writer.send(b"\0")

    def drain(self) -> None:
        """Consume pending wake-ups."""
        try:
            while self._reader.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Release both sockets."""
        global _routed_fd
        if _routed_fd == self.signal_fd and self.signal_fd != -1:
            # Signals must not go on to a closed (or reused) descriptor.
            with contextlib.suppress(ValueError):  # not in the main thread
                signal.set_wakeup_fd(-1)
                _routed_fd = -1
        self._reader.close()
        self._writer.close()

    def __del__(self) -> None:
        self.close()


_local = threading.local()
_main_thread = threading.main_thread()


#: The waker descriptor left as the signal wake-up fd, if any (see wait_socket).
_routed_fd = -1


def _route_signals_to(fd: int) -> int:
    """Make signals write to ``fd`` while the main thread waits; return the old fd.

    A signal may be delivered to any thread. Python then runs its handler
    (KeyboardInterrupt for Ctrl-C) in the main thread, but only once the main
    thread gets back to Python code: if it sits in poll() and the signal
    landed elsewhere, nothing wakes it. With the waker as the wake-up fd, the
    signal ends the poll, as asyncio does for its event loop.
    """
    try:
        return signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
    except ValueError:  # pragma: no cover - e.g. not the main interpreter
        return -1


def thread_waker() -> Waker:
    """Return the calling thread's waker, creating it on first use."""
    try:
        waker: Waker = _local.waker
    except AttributeError:
        waker = _local.waker = Waker()
    return waker


if hasattr(select, "poll"):

    def wait_socket(
        sock: socket.socket, write: bool, timeout: float | None, waker: Waker
    ) -> bool:
        """Wait until ``sock`` is ready, ``waker`` fires or time runs out.

        ``sock`` is waited on for reading, or for writing if ``write``.

        Returns:
            ``True`` if the socket is ready, ``False`` on a wake-up or time-out;
            the caller tells the two apart by its own state and deadline.
        """
        global _routed_fd
        poller = waker.poller
        fd = sock.fileno()
        wanted = select.POLLOUT if write else select.POLLIN
        if fd != waker.polled_fd or wanted != waker.polled_events:
            if waker.polled_fd not in (-1, fd):
                poller.unregister(waker.polled_fd)
            poller.register(fd, wanted)  # or modify
            waker.polled_fd = fd
            waker.polled_events = wanted
        restore = False
        if waker.on_main_thread and _routed_fd != waker.signal_fd:
            # Each set_wakeup_fd() costs a system call (it checks the
            # descriptor): when nobody else had a wake-up fd, ours stays
            # set between waits; a signal between them only makes the next
            # wait return early. Someone else's is put back after each wait.
            previous = _route_signals_to(waker.signal_fd)
            if previous == -1:
                _routed_fd = waker.signal_fd
            else:
                restore = True
        try:
            events = poller.poll(None if timeout is None else max(0.0, timeout) * 1000)
        finally:
            if restore:
                _route_signals_to(previous)
        ready = False
        for event_fd, _ in events:
            if event_fd == fd:
                # POLLHUP / POLLERR count as ready: the next recv or send
                # reports the condition.
                ready = True
            else:
                waker.drain()
        return ready

else:  # pragma: no cover - Windows

    def wait_socket(
        sock: socket.socket, write: bool, timeout: float | None, waker: Waker
    ) -> bool:
        """Wait until ``sock`` is ready, ``waker`` fires or time runs out.

        ``sock`` is waited on for reading, or for writing if ``write``."""
        rlist: list[socket.socket | Waker] = [waker]
        wlist: list[socket.socket | Waker] = []
        (wlist if write else rlist).append(sock)
        r, w, _ = select.select(
            rlist, wlist, [], None if timeout is None else max(0.0, timeout)
        )
        if waker in r:
            waker.drain()
        return sock in r or sock in w


# ------------------------------------------------------ opening handshakes
#
# The opening handshake reads and writes a non-blocking socket directly and
# polls only when it would block, rather than put the socket in time-out mode:
# a socket with a time-out costs a system call per settimeout(), and Python
# polls it before every recv() and send(), even when the data is there (the
# request that a server reads right after accept(), any send to a fresh
# socket). Nothing else waits on these sockets yet, so a plain poll does:
# ThreadingServer.shutdown() ends a server's handshakes by shutting their
# sockets down, which makes the poll return.

_WANT_READ = (BlockingIOError, ssl.SSLWantReadError)
_WANT_WRITE = (BlockingIOError, ssl.SSLWantWriteError)


def time_left(deadline: float | None, doing: str) -> float | None:
    """Seconds left until ``deadline``, ``None`` without one: a socket time-out.

    Args:
        deadline: A :func:`time.monotonic` time, or ``None``.
        doing: What takes the time, for the message: "during the opening
            handshake", say.

    Raises:
        TimeoutError: The deadline passed.
    """
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"timed out {doing}")
    return remaining


def _wait_by(sock: socket.socket, write: bool, deadline: float | None) -> bool:
    """Wait until ``sock`` is ready for reading (or writing) or ``deadline``.

    Returns:
        Whether the socket is ready (``False``: the time ran out).

    Raises:
        socket.timeout: The deadline had passed already.
    """
    timeout = None
    if deadline is not None:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise socket.timeout("timed out")
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLOUT if write else select.POLLIN)
        return bool(poller.poll(None if timeout is None else timeout * 1000))
    else:  # pragma: no cover - Windows
        ready = [sock]
        r, w, _ = select.select(
            [] if write else ready, ready if write else [], [], timeout
        )
        return bool(r or w)


#: What connect_ex() says about a connection a non-blocking socket started
#: (Windows answers with its own code).
_IN_PROGRESS = (
    errno.EINPROGRESS,
    errno.EWOULDBLOCK,
    getattr(errno, "WSAEWOULDBLOCK", errno.EWOULDBLOCK),
)


def start_connect(sock: socket.socket, address: tuple[str, int]) -> bool:
    """Start connecting the non-blocking ``sock``; return whether it's in progress.

    Raises:
        OSError: The connection failed at once.
    """
    error = sock.connect_ex(address)
    if error in _IN_PROGRESS:
        return True
    if error:
        # OSError picks the subclass that matches the code.
        raise OSError(error, os.strerror(error))
    return False


def finish_connect(sock: socket.socket, deadline: float | None) -> None:
    """Wait for the connect that :func:`start_connect` started, before ``deadline``.

    Raises:
        socket.timeout: The deadline passed first.
        OSError: The connection failed (e.g. :exc:`ConnectionRefusedError`).
    """
    while not _wait_by(sock, True, deadline):
        pass
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, os.strerror(error))


def recv_by(
    sock: socket.socket,
    size: int,
    deadline: float | None,
    *,
    wait_first: bool = False,
    flags: int = 0,
) -> bytes:
    """Read up to ``size`` bytes from the non-blocking ``sock`` before ``deadline``.

    ``wait_first``: poll before the first read, when nothing can have come
    yet (an answer to what was just sent): an EAGAIN costs a system call and
    an exception. Not for TLS sockets, whose object may hold decrypted bytes
    that poll doesn't see. ``flags``: for ``recv()``; ``MSG_DONTWAIT`` makes
    a blocking socket do.

    Returns:
        The bytes read; ``b""`` at the end of the stream.

    Raises:
        socket.timeout: The deadline passed first.
    """
    if wait_first:
        _wait_by(sock, False, deadline)
    while True:
        try:
            return sock.recv(size, flags)
        except _WANT_READ:
            _wait_by(sock, False, deadline)
        except ssl.SSLWantWriteError:  # pragma: no cover - TLS renegotiation
            _wait_by(sock, True, deadline)


def send_all_by(sock: socket.socket, data: bytes, deadline: float | None) -> None:
    """Write all of ``data`` to the non-blocking ``sock`` before ``deadline``.

    Raises:
        socket.timeout: The deadline passed first.
    """
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except _WANT_WRITE:
            _wait_by(sock, True, deadline)
            continue
        except ssl.SSLWantReadError:  # pragma: no cover - TLS renegotiation
            _wait_by(sock, False, deadline)
            continue
        view = view[sent:]
