"""send_small(): small non-blocking sends that keep the GIL, and its fallbacks."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from wssync import sending
from wssync.sending import MAX_SMALL_SEND, send_small

pytestmark = pytest.mark.timeout(10)

posix_only = pytest.mark.skipif(
    sys.platform == "win32", reason="Windows always uses socket.send()"
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


class NoSend(socket.socket):
    """A socket whose send() fails the test: the C library's must be used."""

    def send(self, *args: object) -> int:
        raise AssertionError("socket.send() was called")


def receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk
        data += chunk
    return data


@posix_only
def test_small_bytes_bypass_socket_send() -> None:
    a, b = socket.socketpair()
    with NoSend(fileno=a.detach()) as sender, b:
        sender.setblocking(False)
        assert send_small(sender, b"hello", 0) == 5
        assert receive(b, 5) == b"hello"


@pytest.mark.parametrize(
    "data",
    [
        bytearray(b"buffer"),
        memoryview(b"view of bytes"),
        b"x" * (MAX_SMALL_SEND + 1),
    ],
    ids=["bytearray", "memoryview", "big"],
)
def test_other_data_goes_through_socket_send(
    pair: tuple[socket.socket, socket.socket], data: bytes
) -> None:
    a, b = pair
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sent = send_small(a, data, 0)
    assert 0 < sent <= len(data)
    assert receive(b, sent) == bytes(data)[:sent]


def test_without_ctypes_socket_send_works(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sending, "_libc_send", None)
    a, b = pair
    assert send_small(a, b"fallback", 0) == 8
    assert receive(b, 8) == b"fallback"


def test_full_buffer_raises_blocking_io_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    chunk = b"x" * 4096
    with pytest.raises(BlockingIOError):
        for _ in range(100_000):  # a socket buffer is far smaller than 400 MB
            send_small(a, chunk, 0)


@posix_only
def test_dontwait_flag_on_blocking_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert a.getblocking()
        with pytest.raises(BlockingIOError):
            for _ in range(100_000):
                send_small(a, b"x" * 4096, socket.MSG_DONTWAIT)


def test_closed_socket_raises_os_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    a.close()
    with pytest.raises(OSError):
        send_small(a, b"late", 0)


@posix_only
def test_gone_peer_raises_without_sigpipe() -> None:
    # In a process where SIGPIPE kills (the default, which Python changes at
    # start-up but an embedding application may not), a send to a peer that
    # went away must raise, not kill.
    code = """
import signal, socket
from wssync.sending import send_small
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
a, b = socket.socketpair()
b.close()
try:
    send_small(a, b"to nobody", 0)
except OSError as exc:
    print(type(exc).__name__)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("BrokenPipeError", "ConnectionResetError")
