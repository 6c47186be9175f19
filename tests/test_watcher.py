"""The watcher's refresh: when it wakes the watcher thread, and when it doesn't."""

from __future__ import annotations

import socket
import time
import weakref
from collections.abc import Iterator

import pytest
from pairs import make_connection

from wssync import connection as connection_module
from wssync.sansio.protocol import Side
from wssync.watcher import LAZY_DELAY, Watcher


class Conn:
    """A stand-in for a connection: a socket and no wish to be watched."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def watch_socket(self) -> socket.socket:
        return self.sock

    def watch_events(self) -> int:
        return 0

    def on_readable(self) -> None:
        pass

    def on_writable(self) -> None:
        pass


@pytest.fixture
def watcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Watcher, list[None]]]:
    """A watcher whose thread doesn't run, and the list of its wake-ups.

    Without the thread, nothing changes the watcher's state behind the
    test's back: the test says when the watcher plans to wake up next.
    """
    monkeypatch.setattr(Watcher, "_run", lambda self: None)
    watcher = Watcher()
    watcher._thread.join()
    wakes: list[None] = []
    monkeypatch.setattr(watcher._waker, "wake", lambda: wakes.append(None))
    yield watcher, wakes
    watcher._waker.close()
    watcher._selector.close()


def test_refresh_wakes_the_watcher(watcher: tuple[Watcher, list[None]]) -> None:
    w, wakes = watcher
    a, b = socket.socketpair()
    with a, b:
        conn = Conn(a)
        # Even when the watcher plans to look at its connections soon.
        w._wakes_by = 0.0
        w.refresh(conn)
        assert wakes == [None]
        assert conn in w._pending


def test_lazy_refresh_wakes_an_idle_watcher_only(
    watcher: tuple[Watcher, list[None]],
) -> None:
    w, wakes = watcher
    a, b = socket.socketpair()
    with a, b:
        conn = Conn(a)
        w._wakes_by = 0.0  # it looks at pending connections soon anyway
        w.refresh(conn, lazy=True)
        assert wakes == []
        w._wakes_by = float("inf")  # it sleeps until woken
        w.refresh(conn, lazy=True)
        assert wakes == [None]


def test_refresh_of_a_closed_socket_is_lazy(
    watcher: tuple[Watcher, list[None]],
) -> None:
    # After close() there is nothing to watch, only bookkeeping: no wake-up
    # (nor a thread switch) while the watcher looks again soon anyway.
    w, wakes = watcher
    a, b = socket.socketpair()
    b.close()
    a.close()
    conn = Conn(a)
    w._wakes_by = 0.0
    w.refresh(conn)
    assert wakes == []
    assert conn in w._pending
    # An idle watcher is still woken, so it forgets the connection.
    w._wakes_by = float("inf")
    w.refresh(conn)
    assert wakes == [None]


class Owner:
    """An object with a timer on one of its methods."""

    def __init__(self, calls: list[str], name: str) -> None:
        self.calls = calls
        self.name = name

    def tick(self) -> None:
        self.calls.append(self.name)


def run_due_timers(w: Watcher) -> None:
    """One step of the watcher loop, without waiting in select()."""
    w._waker._writer.send(b"\0")  # select() returns at once
    w._step()


def test_timers_dont_keep_their_object_alive(
    watcher: tuple[Watcher, list[None]],
) -> None:
    # A closed connection's keepalive and close timers must not keep it (and
    # all it holds) for ping_interval seconds: the timer on a bound method
    # holds its object weakly, and is skipped once the object is gone.
    w, _ = watcher
    calls: list[str] = []
    kept = Owner(calls, "kept")
    dropped = Owner(calls, "dropped")
    w.call_at(0.0, kept.tick)
    w.call_at(0.0, dropped.tick)
    w.call_at(0.0, lambda: calls.append("function"))
    probe = weakref.ref(dropped)
    del dropped
    assert probe() is None  # freed at once: the timer didn't hold it
    run_due_timers(w)
    assert calls == ["kept", "function"]
    assert w._timers == []


def test_watcher_stays_alert_for_a_while_after_refreshing(
    watcher: tuple[Watcher, list[None]],
) -> None:
    # After a step that refreshed connections, the next steps come back
    # within LAZY_DELAY even with nothing pending (a wake-up often ends the
    # refreshing step's sleep at once): lazy refreshes then need no wake-up.
    w, wakes = watcher
    a, b = socket.socketpair()
    with a, b:
        w._pending[Conn(a)] = None
        run_due_timers(w)  # refreshes the connection
        run_due_timers(w)  # nothing pending
        assert w._wakes_by <= time.monotonic() + LAZY_DELAY
        w.refresh(Conn(a), lazy=True)
        assert wakes == []
        # Long after the last refresh, an idle watcher sleeps until woken.
        w._pending.clear()
        w._refreshed_at = time.monotonic() - 1
        run_due_timers(w)
        assert w._wakes_by == float("inf")


@pytest.mark.parametrize("closed_first", [False, True])
def test_keepalive_timer_is_armed_at_the_watchers_first_look(
    watcher: tuple[Watcher, list[None]],
    monkeypatch: pytest.MonkeyPatch,
    closed_first: bool,
) -> None:
    # Not in _start: a connection that closes before the watcher looks at it
    # never costs a timer; one that stays open gets its first keepalive at
    # ping_interval after _start, as if armed then.
    w, _ = watcher
    monkeypatch.setattr(connection_module, "get_watcher", lambda: w)
    a, b = socket.socketpair()
    with a, b:
        started = time.monotonic()
        conn = make_connection(a, Side.SERVER, ping_interval=20)
        assert w._timers == []
        assert conn in w._pending  # the first look is asked for
        if closed_first:
            conn._abort(None)
        run_due_timers(w)  # the first look
        keepalives = [t for t in w._timers if t[2].__name__ == "_keepalive"]
        if closed_first:
            assert keepalives == []
        else:
            ((when, _, _, owner),) = keepalives
            assert owner is not None and owner() is conn
            assert started + 20 <= when <= time.monotonic() + 20
            run_due_timers(w)  # a second look arms nothing more
            assert len([t for t in w._timers if t[2].__name__ == "_keepalive"]) == 1
