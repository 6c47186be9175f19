"""The opening handshake's I/O on non-blocking sockets: recv_by and send_all_by."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from wssync import waiting
from wssync.waiting import recv_by, send_all_by


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
    ) -> None:
        waits.append(write)
        b.sendall(b"late")
        wait(sock, write, deadline)

    monkeypatch.setattr(waiting, "_wait_by", write_then_wait)
    assert recv_by(a, 4096, time.monotonic() + 5) == b"late"
    assert waits == [False]  # one wait, for reading
    waits.clear()
    # Without a deadline too.
    assert recv_by(a, 4096, None) == b"late"
    assert waits == [False]


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
