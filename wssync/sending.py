"""Small sends that can't block, without letting go of the GIL.

:meth:`socket.socket.send` releases the GIL around its system call, as every
call that may block must. A send that can't block (on a non-blocking socket,
or with ``MSG_DONTWAIT``) of a frame of a few KiB takes a few microseconds in
the kernel; releasing the GIL for it costs more than it saves when other
threads are waiting for the GIL: one of them takes it, and the sender queues
to get it back, a thread switch per send (the "convoy effect" of the GIL).
With a hundred busy connections (benchmark S4), calling ``send(2)`` through
:mod:`ctypes` with the GIL held took the server's CPU per round trip from
about 55 to 40 µs.

Where :mod:`ctypes` or the C library's ``send()`` can't be had (Windows), or
when the call fails, :meth:`socket.socket.send` does the work: it gives the
result, or raises the error, exactly as usual.
"""

from __future__ import annotations

import socket
from typing import Callable, Optional

__all__ = ["MAX_SMALL_SEND", "send_small"]

#: Bigger sends release the GIL: copying them into the kernel takes long
#: enough for other threads to use it.
MAX_SMALL_SEND = 16 * 1024

# MSG_NOSIGNAL: a peer that went away must give EPIPE, not SIGPIPE, even in
# a process that didn't ignore SIGPIPE (Python does at start-up, but an
# application embedding it may not). A plain int: the socket module's flags
# are an IntFlag, whose "|" is Python code (0.6 µs).
_NOSIGNAL: int = int(getattr(socket, "MSG_NOSIGNAL", 0))


def _find_libc_send() -> Optional[Callable[[int, bytes, int, int], int]]:
    try:
        import ctypes

        # PyDLL: its functions run with the GIL held. No argtypes: ctypes
        # converts int and bytes itself, faster than through declared types.
        # The result is read as a C int, enough for MAX_SMALL_SEND.
        libc_send: Callable[[int, bytes, int, int], int] = ctypes.PyDLL(None).send
    except Exception:  # pragma: no cover - no ctypes, or no such C library
        # (Windows: ctypes can't open "the program itself"). socket.send() it is.
        return None
    return libc_send


_libc_send = _find_libc_send()


def send_small(
    sock: socket.socket, data: bytes | bytearray | memoryview, flags: int
) -> int:
    """Send ``data`` like ``sock.send(data, flags)``, keeping the GIL if it's small.

    The caller guarantees the call can't block: ``sock`` is non-blocking or
    ``flags`` has ``MSG_DONTWAIT``, and the socket is open and stays so (no
    other thread may close it meanwhile).

    Returns:
        The number of bytes sent.

    Raises:
        OSError: As :meth:`socket.socket.send` (``BlockingIOError`` when the
            socket's buffer is full).
    """
    # Only bytes: ctypes passes them as a pointer to their buffer.
    if _libc_send is not None and type(data) is bytes and len(data) <= MAX_SMALL_SEND:
        sent = _libc_send(sock.fileno(), data, len(data), flags | _NOSIGNAL)
        if sent >= 0:
            return sent
        # An error (EAGAIN mostly): let socket.send() report it as usual.
    return sock.send(data, flags | _NOSIGNAL)
