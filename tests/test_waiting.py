"""Interruptible waits: wait_socket() with a thread's waker."""

from __future__ import annotations

import select
import signal
import socket
import threading
from collections.abc import Iterator

import pytest

from wssync import waiting
from wssync.waiting import Waker, wait_socket

pytestmark = [
    pytest.mark.timeout(10),
    pytest.mark.skipif(not hasattr(select, "poll"), reason="poll() waits only"),
]


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(2)]
    yield made
    for a, b in made:
        a.close()
        b.close()


@pytest.fixture
def waker() -> Iterator[Waker]:
    made = Waker()
    yield made
    made.close()


def test_ready_timeout_and_wake(
    pairs: list[tuple[socket.socket, socket.socket]], waker: Waker
) -> None:
    (a, b), _ = pairs
    assert wait_socket(a, False, 0, waker) is False  # nothing to read
    b.send(b"x")
    assert wait_socket(a, False, 5, waker) is True
    assert wait_socket(a, True, 5, waker) is True  # writable too
    a.recv(1)
    waker.wake()
    assert wait_socket(a, False, 5, waker) is False  # woken, not ready
    assert wait_socket(a, False, 0, waker) is False  # the wake-up was consumed


def test_switching_sockets_forgets_the_last_one(
    pairs: list[tuple[socket.socket, socket.socket]], waker: Waker
) -> None:
    # The last socket waited on stays registered between waits: waiting on
    # another one must not report the first one's readiness.
    (a, b), (c, d) = pairs
    b.send(b"x")
    assert wait_socket(a, False, 5, waker) is True
    assert wait_socket(c, False, 0, waker) is False
    d.send(b"y")
    assert wait_socket(c, False, 5, waker) is True
    assert wait_socket(a, False, 5, waker) is True  # and back


def test_closed_socket_left_registered_does_not_wake(waker: Waker) -> None:
    a, b = socket.socketpair()
    b.send(b"x")
    assert wait_socket(a, False, 5, waker) is True
    a.close()
    b.close()
    c, d = socket.socketpair()
    try:
        assert wait_socket(c, False, 0, waker) is False
    finally:
        c.close()
        d.close()


@pytest.fixture
def no_wakeup_fd() -> Iterator[None]:
    previous = signal.set_wakeup_fd(-1)
    waiting._routed_fd = -1
    yield
    signal.set_wakeup_fd(previous)
    waiting._routed_fd = -1


@pytest.mark.usefixtures("no_wakeup_fd")
def test_signals_stay_routed_to_the_main_thread_waker(
    pairs: list[tuple[socket.socket, socket.socket]], waker: Waker
) -> None:
    # Nobody else had a wake-up fd: the waker's stays set between waits,
    # sparing two system calls per wait; closing the waker unsets it.
    assert threading.current_thread() is threading.main_thread()
    (a, _), _ = pairs
    wait_socket(a, False, 0, waker)
    assert signal.set_wakeup_fd(waker.signal_fd) == waker.signal_fd
    waker.close()
    assert signal.set_wakeup_fd(-1) == -1


@pytest.mark.usefixtures("no_wakeup_fd")
def test_someone_elses_wakeup_fd_is_put_back(
    pairs: list[tuple[socket.socket, socket.socket]], waker: Waker
) -> None:
    (a, _), (theirs, _) = pairs
    theirs.setblocking(False)
    signal.set_wakeup_fd(theirs.fileno())
    wait_socket(a, False, 0, waker)
    assert signal.set_wakeup_fd(-1) == theirs.fileno()


def test_waker_of_another_thread_leaves_signals_alone(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    (a, _), _ = pairs
    result: list[bool] = []

    def wait_in_thread() -> None:
        waker = Waker()
        try:
            result.append(waker.on_main_thread)
            result.append(wait_socket(a, False, 0, waker))
        finally:
            waker.close()

    thread = threading.Thread(target=wait_in_thread)
    thread.start()
    thread.join(5)
    assert result == [False, False]
