"""Waits: wait_socket() with a thread's waker, and the opening handshake's I/O
on non-blocking sockets (start_connect / finish_connect, recv_by, send_all_by)."""

from __future__ import annotations

import select
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from wssync import waiting
from wssync.waiting import (
    Waker,
    finish_connect,
    recv_by,
    send_all_by,
    start_connect,
    wait_socket,
)

pytestmark = pytest.mark.timeout(10)

needs_poll = pytest.mark.skipif(not hasattr(select, "poll"), reason="poll() waits only")


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


@needs_poll
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


@needs_poll
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


@needs_poll
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


@needs_poll
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


@needs_poll
@pytest.mark.usefixtures("no_wakeup_fd")
def test_someone_elses_wakeup_fd_is_put_back(
    pairs: list[tuple[socket.socket, socket.socket]], waker: Waker
) -> None:
    (a, _), (theirs, _) = pairs
    theirs.setblocking(False)
    signal.set_wakeup_fd(theirs.fileno())
    wait_socket(a, False, 0, waker)
    assert signal.set_wakeup_fd(-1) == theirs.fileno()


@needs_poll
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


# ------------------------------------------------------ opening handshakes


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair; the first end non-blocking, as the handshake has it."""
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b:
        yield a, b


def test_recv_by_returns_what_is_there(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    b.sendall(b"GET / HTTP/1.1\r\n")
    assert recv_by(a, 4096, time.monotonic() + 5) == b"GET / HTTP/1.1\r\n"


def test_recv_by_waits_for_data(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing there yet: recv_by polls, and reads once the peer has written.
    a, b = pair
    waits: list[bool] = []
    wait = waiting._wait_by

    def write_then_wait(
        sock: socket.socket, write: bool, deadline: float | None
    ) -> bool:
        waits.append(write)
        b.sendall(b"late")
        return wait(sock, write, deadline)

    monkeypatch.setattr(waiting, "_wait_by", write_then_wait)
    assert recv_by(a, 4096, time.monotonic() + 5) == b"late"
    assert waits == [False]  # one wait, for reading
    waits.clear()
    # Without a deadline too.
    assert recv_by(a, 4096, None) == b"late"
    assert waits == [False]


def test_recv_by_waits_first_when_asked(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # wait_first: poll, then read; no read that would only say EAGAIN.
    a, b = pair
    calls: list[str] = []
    wait = waiting._wait_by

    def recorded_wait(sock: socket.socket, write: bool, deadline: float | None) -> bool:
        calls.append("wait")
        return wait(sock, write, deadline)

    class RecordingSocket:
        def recv(self, size: int, flags: int = 0) -> bytes:
            calls.append("recv")
            return a.recv(size, flags)

        def fileno(self) -> int:
            return a.fileno()

    monkeypatch.setattr(waiting, "_wait_by", recorded_wait)
    b.sendall(b"answer")
    sock: socket.socket = RecordingSocket()  # type: ignore[assignment]
    assert recv_by(sock, 4096, time.monotonic() + 5, wait_first=True) == b"answer"
    assert calls == ["wait", "recv"]
    calls.clear()
    b.sendall(b"more")
    assert recv_by(sock, 4096, time.monotonic() + 5) == b"more"
    assert calls == ["recv"]


@pytest.mark.skipif(not hasattr(socket, "MSG_DONTWAIT"), reason="no MSG_DONTWAIT")
def test_recv_by_with_dontwait_on_a_blocking_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # A connection's socket may block already (the client sets its mode
    # while the server answers): MSG_DONTWAIT keeps the deadline.
    a, b = pair
    a.setblocking(True)
    with pytest.raises(socket.timeout):
        recv_by(a, 4096, time.monotonic() + 0.05, flags=socket.MSG_DONTWAIT)
    b.sendall(b"late")
    assert recv_by(a, 4096, time.monotonic() + 5, flags=socket.MSG_DONTWAIT) == b"late"


def test_recv_by_reports_end_of_stream(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    b.shutdown(socket.SHUT_WR)
    assert recv_by(a, 4096, time.monotonic() + 5) == b""


def test_recv_by_times_out(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(socket.timeout):
        recv_by(a, 4096, time.monotonic() + 0.05)
    # A deadline already past fails without waiting.
    with pytest.raises(socket.timeout):
        recv_by(a, 4096, time.monotonic() - 1)


def test_send_all_by_writes_everything_past_a_full_buffer(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # More than the socket buffers hold: send_all_by must wait for the
    # reader and go on with the rest (partial writes).
    a, b = pair
    data = bytes(range(256)) * 16384  # 4 MiB
    received = bytearray()

    def read() -> None:
        while len(received) < len(data):
            chunk = b.recv(65536)
            if not chunk:
                break
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        send_all_by(a, data, time.monotonic() + 10)
    finally:
        reader.join(10)
    assert bytes(received) == data


def test_send_all_by_times_out_when_nobody_reads(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    with pytest.raises(socket.timeout):
        send_all_by(a, b"x" * (8 << 20), time.monotonic() + 0.1)


def test_time_left() -> None:
    assert waiting.time_left(None, "doing nothing") is None
    left = waiting.time_left(time.monotonic() + 60, "waiting")
    assert left is not None and 0 < left <= 60
    with pytest.raises(TimeoutError, match="timed out connecting through"):
        waiting.time_left(time.monotonic() - 1, "connecting through the proxy")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock


def _nonblocking(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


def _connect(
    sock: socket.socket, address: tuple[str, int], deadline: float | None
) -> None:
    if start_connect(sock, address):
        finish_connect(sock, deadline)


def test_start_connect_then_finish_connect(listener: socket.socket) -> None:
    with _nonblocking() as sock:
        _connect(sock, listener.getsockname(), time.monotonic() + 5)
        accepted, _ = listener.accept()
        with accepted:
            sock.send(b"ping")
            assert accepted.recv(4) == b"ping"
            assert sock.getpeername() == listener.getsockname()


def test_connect_over_ipv6() -> None:
    try:
        server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        server.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with server, _nonblocking(socket.AF_INET6) as sock:
        server.listen(1)
        _connect(sock, ("::1", server.getsockname()[1]), None)
        accepted, _ = server.accept()
        accepted.close()


def test_finish_connect_reports_a_refused_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    # Nothing listens there now.
    with _nonblocking() as sock, pytest.raises(ConnectionRefusedError):
        _connect(sock, address, time.monotonic() + 5)


def test_finish_connect_times_out_when_nobody_answers(
    unanswered_address: tuple[str, int],
) -> None:
    with _nonblocking() as sock:
        assert start_connect(sock, unanswered_address)
        start = time.monotonic()
        with pytest.raises(socket.timeout):
            finish_connect(sock, start + 0.2)
        assert time.monotonic() - start >= 0.2
