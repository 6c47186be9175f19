"""The process-wide watcher: one thread for every connection no thread is reading.

A connection's socket is read by the thread that calls ``recv()`` (no
hand-off between threads on the hot path). When no thread is reading, the
watcher notices incoming bytes, answers pings, records closes and buffers
messages up to the connection's limits; it also flushes output that could
not be written at once (pongs, broadcasts) and runs timers (keepalive).

Only the watcher thread touches its selector. Other threads ask it to look
at a connection again with :meth:`Watcher.refresh`; the connection itself
says which events it wants (:meth:`Watched.watch_events`). A refresh after a
``recv()`` is *lazy*: it does not wake the watcher, which picks it up within
:data:`LAZY_DELAY`. That keeps a wake-up system call and a thread switch off
every ``recv()``, at the price of answering pings up to that delay later.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import os
import selectors
import socket
import threading
import time
import types
import weakref
from typing import Callable, Protocol

from .waiting import Waker

__all__ = ["LAZY_DELAY", "Watched", "Watcher", "get_watcher"]

logger = logging.getLogger("wssync.watcher")

#: Longest delay before a lazy refresh takes effect. The API promises that
#: pings are answered within 100 ms while no thread reads; half of it leaves
#: room for the read itself on a loaded machine.
LAZY_DELAY = 0.05


class Watched(Protocol):
    """What the watcher needs from a connection."""

    def watch_socket(self) -> socket.socket:
        """The socket to watch."""

    def watch_events(self) -> int:
        """``selectors.EVENT_READ`` and/or ``EVENT_WRITE`` wanted now, or 0."""

    def on_readable(self) -> None:
        """Read what is available without blocking and process it."""

    def on_writable(self) -> None:
        """Write pending output without blocking."""


class Watcher:
    """A thread with a selector over idle connections, and a timer heap."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._waker = Waker()
        self._selector.register(self._waker, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        # Connections whose registration must be brought up to date; a dict
        # keeps insertion order and ignores duplicates.
        self._pending: dict[Watched, None] = {}
        # (when, sequence, callback or unbound function, weak reference to
        # the bound method's object or None); see call_at().
        self._timers: list[
            tuple[float, int, Callable[..., None], weakref.ref[object] | None]
        ] = []
        self._sequence = itertools.count()
        # Monotonic time by which the watcher will look at _pending anyway.
        self._wakes_by = float("inf")
        # Monotonic time of the last step that had connections to refresh.
        self._refreshed_at = float("-inf")
        self._thread = threading.Thread(
            target=self._run, name="wssync-watcher", daemon=True
        )
        self._thread.start()

    def refresh(self, conn: Watched, *, lazy: bool = False) -> None:
        """Have the watcher bring ``conn``'s registration up to date.

        Args:
            conn: The connection.
            lazy: Allow up to :data:`LAZY_DELAY` before it happens, without
                waking the watcher if it already wakes up by then. Always
                so once the connection's socket is closed.
        """
        if not lazy and conn.watch_socket().fileno() < 0:
            # A closed socket leaves only bookkeeping (the kernel already
            # dropped it from the selector): no need to wake the watcher
            # and switch threads for it. Saved about 100 µs of CPU per
            # connect() + close() (C3), GIL hand-overs included.
            lazy = True
        with self._lock:
            self._pending[conn] = None
            if lazy and self._wakes_by <= time.monotonic() + LAZY_DELAY:
                return
            self._wakes_by = 0.0
        self._waker.wake()

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the watcher thread at monotonic time ``when``.

        A bound method's object isn't kept alive by the timer: once nothing
        else refers to it, the timer is dropped. A closed connection's
        keepalive and close timers would otherwise keep it, and everything it
        holds, for up to ``ping_interval`` seconds; at a thousand connections
        a second, that is tens of thousands of dead connections for the
        garbage collector to go over, which cost 20 to 80 µs per
        ``connect()`` + ``close()`` (C3), growing with the backlog. An open
        connection is referred to by its application, or by the watcher's
        selector while no thread reads it.
        """
        function: Callable[..., None] = callback
        owner: weakref.ref[object] | None = None
        if isinstance(callback, types.MethodType):
            # Not a weakref.WeakMethod: that one makes a closure per timer,
            # more objects for the garbage collector than it saves.
            with contextlib.suppress(TypeError):  # not weakly referable
                owner = weakref.ref(callback.__self__)
                function = callback.__func__
        with self._lock:
            heapq.heappush(self._timers, (when, next(self._sequence), function, owner))
            if when >= self._wakes_by:
                return
            self._wakes_by = when
        self._waker.wake()

    def _run(self) -> None:
        while True:
            try:
                self._step()
            except Exception:  # pragma: no cover - a bug; keep watching
                logger.exception("watcher error")

    def _step(self) -> None:
        now = time.monotonic()
        due: list[Callable[[], None]] = []
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
            while self._timers and self._timers[0][0] <= now:
                _, _, function, owner = heapq.heappop(self._timers)
                if owner is None:
                    due.append(function)
                else:
                    obj = owner()
                    if obj is not None:  # else: garbage, nothing to do
                        due.append(functools.partial(function, obj))
        for callback in due:
            self._guard(callback)
        for conn in pending:
            self._update(conn)
        with self._lock:
            if self._pending:
                wakes_by = now
            else:
                wakes_by = self._timers[0][0] if self._timers else float("inf")
            # While connections were refreshed lately, more lazy refreshes
            # are likely: come back within LAZY_DELAY instead of sleeping.
            # "Lately" spans steps: a wake-up (say by the next connection's
            # start) often ends the sleep of the step that did the
            # refreshing, and the step after it has none pending. Without a
            # memory, that step slept until the next timer, and the next lazy
            # refresh woke the watcher: nearly one wake-up (a thread switch)
            # per connection in C3.
            if pending:
                self._refreshed_at = now
            if now - self._refreshed_at < LAZY_DELAY:
                wakes_by = min(wakes_by, now + LAZY_DELAY)
            self._wakes_by = wakes_by
        timeout = None if wakes_by == float("inf") else max(0.0, wakes_by - now)
        for key, mask in self._selector.select(timeout):
            conn = key.data
            if conn is None:
                self._waker.drain()
                continue
            if mask & selectors.EVENT_WRITE:
                self._guard(conn.on_writable)
            if mask & selectors.EVENT_READ:
                self._guard(conn.on_readable)
            self._update(conn)

    def _update(self, conn: Watched) -> None:
        sock = conn.watch_socket()
        events = conn.watch_events()
        fd = sock.fileno()
        if fd >= 0:
            # By descriptor: get_key() raises KeyError for a socket that isn't
            # registered, and formats repr(sock) for it, which costs two
            # system calls (getsockname, getpeername).
            key = self._selector.get_map().get(fd)
            if key is not None and key.fileobj is not sock:
                # A closed connection's stale entry for a reused descriptor.
                self._forget(key.fileobj)  # type: ignore[arg-type]
                key = None
        else:
            try:
                key = self._selector.get_key(sock)
            except (KeyError, ValueError):
                return
        try:
            if events == 0:
                if key is not None:
                    self._selector.unregister(sock)
            elif key is None:
                self._register(sock, events, conn)
            elif key.events != events:
                self._selector.modify(sock, events, conn)
        except (OSError, ValueError):
            # The socket was closed under us; forget it.
            self._forget(sock)

    def _register(self, sock: socket.socket, events: int, conn: Watched) -> None:
        try:
            self._selector.register(sock, events, conn)
        except KeyError:
            # The file descriptor belonged to a connection whose socket was
            # closed before the watcher forgot it; the kernel dropped that
            # registration with the socket, only the map entry is stale.
            stale = self._selector.get_map().get(sock.fileno())
            if stale is not None:
                self._selector.unregister(stale.fileobj)
            self._selector.register(sock, events, conn)

    def _forget(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(sock)

    @staticmethod
    def _guard(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            logger.exception("error in a watcher callback")


_watcher: Watcher | None = None
_watcher_lock = threading.Lock()


def get_watcher() -> Watcher:
    """Return the process-wide watcher, starting its thread on first use."""
    global _watcher
    watcher = _watcher
    if watcher is None:
        with _watcher_lock:
            watcher = _watcher
            if watcher is None:
                watcher = _watcher = Watcher()
    return watcher


def _forget_watcher_after_fork() -> None:
    # A forked child (a gunicorn worker) has no watcher thread: start anew.
    global _watcher, _watcher_lock
    _watcher = None
    _watcher_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_watcher_after_fork)
