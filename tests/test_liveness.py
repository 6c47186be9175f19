"""Liveness under threads and slow peers: no hangs, no lost messages.

Issue 4, "Liveness and threads". Each bullet has its tests, named after it:

- peer pings answered and peer closes noticed within 100 ms without recv():
  ``test_ping_answered_within_100ms_without_recv``,
  ``test_close_noticed_within_100ms_without_recv``;
- keepalive closes dead connections, never a slow healthy reader:
  ``test_keepalive_closes_dead_connection_1011``,
  ``test_keepalive_spares_slow_reader``,
  ``test_keepalive_spares_slow_reader_under_back_pressure``;
- close() and shutdown() bounded while a send is blocked, write_timeout:
  ``test_close_returns_within_close_timeout_while_a_send_is_blocked``,
  ``test_shutdown_returns_within_close_timeout_while_sends_are_blocked``,
  ``test_write_timeout_drops_a_peer_that_stops_reading``,
  ``test_recv_returns_at_close_timeout_when_peer_keeps_tcp_open``;
- ``test_close_from_another_thread_unblocks_receivers``;
- ``test_sigint_interrupts_blocking_recv``, ``test_sigint_interrupts_serve_forever``;
- ``test_concurrent_senders_never_interleave``,
  ``test_concurrent_receivers_get_each_message_once``,
  ``test_recv_timeout_raises_timeout_error_and_connection_stays_usable``;
- ``test_no_thread_or_socket_leak_after_hundreds_of_connections``,
  ``test_handler_exception_closes_1011_is_logged_and_server_keeps_serving``;
- ``test_connect_without_with_emits_no_warning`` (and ``..._at_exit``).

Misbehaving peers are scripted raw sockets (``tests/rawpeer.py``). Where a
test must know that a thread is blocked writing to a peer that stopped
reading, it watches wssync's interruptible wait instead of sleeping.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pairs import make_connection
from rawpeer import (
    CONT,
    PING,
    PONG,
    TEXT,
    RawPeer,
    RawServer,
    build_frame,
    running_server,
)

import wssync
import wssync.connection
from wssync.connection import Connection
from wssync.sansio.protocol import Side

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent

# Margin over a configured timeout before a test calls it missed: loose
# enough for a loaded 2-core CI machine, tight enough to catch a wait that
# ignores the timeout (those wait for a default of 10 s, or forever).
MARGIN = 1.5

# More than any socket buffer holds: a send of this to a peer that doesn't
# read blocks.
HUGE = 16 << 20

ROLES = ["server", "client"]


@pytest.fixture
def blocked_writes(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set as soon as a connection waits for its socket to become writable.

    That wait happens only when the peer doesn't read fast enough; the
    event tells a test that a send is really blocked, without sleeping.
    """
    event = threading.Event()
    original = wssync.connection.wait_socket

    def wait_socket(sock: socket.socket, write: bool, *args: Any) -> bool:
        if write:
            event.set()
        return original(sock, write, *args)

    monkeypatch.setattr(wssync.connection, "wait_socket", wait_socket)
    return event


def echo(ws: wssync.ServerConnection) -> None:
    with contextlib.suppress(wssync.ConnectionClosed):
        for message in ws:
            ws.send(message)


@contextlib.contextmanager
def wssync_and_raw_peer(
    role: str, **options: Any
) -> Iterator[tuple[Connection, RawPeer]]:
    """A wssync connection playing ``role``, and a scripted raw peer.

    In the server role, the handler parks (the application is elsewhere)
    and the test drives the connection from its own thread.
    """
    options.setdefault("close_timeout", 0.5)
    if role == "server":
        accepted: queue.Queue[wssync.ServerConnection] = queue.Queue()
        release = threading.Event()

        def handler(ws: wssync.ServerConnection) -> None:
            accepted.put(ws)
            release.wait(30)

        with running_server(handler, **options) as server:
            try:
                with RawPeer.connect(server.port) as peer:
                    yield accepted.get(timeout=5), peer
            finally:
                release.set()
    else:
        with RawServer() as raw, concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(raw.accept_handshake)
            connection = wssync.connect(raw.uri, compression=None, **options)
            try:
                peer, _ = future.result(timeout=5)
                yield connection, peer
            finally:
                raw.close()
                connection.close()


def read_until(peer: RawPeer, opcode: int, deadline: float, what: str) -> bytes:
    """Skip frames until one with ``opcode``; fail if it comes after ``deadline``."""
    while True:
        remaining = deadline - time.monotonic()
        try:
            frame = peer.recv_frame(timeout=max(0.0, remaining))
        except TimeoutError:
            pytest.fail(f"no {what} in time")
        if frame.opcode == opcode:
            assert time.monotonic() <= deadline, f"{what} came too late"
            return frame.payload


@contextlib.contextmanager
def application(kind: str, connection: Connection, peer: RawPeer) -> Iterator[None]:
    """What the application does meanwhile, never inside recv().

    ``idle`` sleeps or computes; ``after-recv`` received a message just
    before (the reading thread handed the socket back to the watcher);
    ``sending`` sends a message every 10 ms, like a clock.
    """
    if kind == "after-recv":
        peer.send_frame(TEXT, b"hello")
        assert connection.recv(timeout=5) == "hello"
    if kind != "sending":
        yield
        return
    stop = threading.Event()

    def tick() -> None:
        with contextlib.suppress(wssync.ConnectionClosed):
            while not stop.wait(0.01):  # the application's pace
                connection.send("tick")

    thread = threading.Thread(target=tick)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        assert not thread.is_alive()


ACTIVITIES = ["idle", "after-recv", "sending"]


# ---------------------------------------------------- pings and closes, 100 ms


@pytest.mark.parametrize("activity", ACTIVITIES)
@pytest.mark.parametrize("role", ROLES)
def test_ping_answered_within_100ms_without_recv(role: str, activity: str) -> None:
    with (
        wssync_and_raw_peer(role) as (connection, peer),
        application(activity, connection, peer),
    ):
        for probe in [b"first", b"second"]:
            start = time.monotonic()
            peer.send_frame(PING, probe)
            assert read_until(peer, PONG, start + 0.1, "pong") == probe


@pytest.mark.parametrize("activity", ACTIVITIES)
@pytest.mark.parametrize("role", ROLES)
def test_close_noticed_within_100ms_without_recv(role: str, activity: str) -> None:
    with wssync_and_raw_peer(role) as (connection, peer):
        with application(activity, connection, peer):
            start = time.monotonic()
            peer.send_close(1000, b"bye")
            echoed = read_until(peer, 0x8, start + 0.1, "close frame")
            assert echoed[:2] == b"\x03\xe8"
            # The application learns it on its next call.
            with pytest.raises(wssync.ConnectionClosedOK):
                connection.send("too late")
            if role == "server":
                # RFC 6455 §7.1.1: the server closes the TCP connection first.
                peer.expect_eof(timeout=1)
            peer.close()
        with pytest.raises(wssync.ConnectionClosedOK):
            connection.recv(timeout=5)
        assert connection.close_code == 1000
        assert connection.close_reason == "bye"


# ------------------------------------------------------------------ keepalive


@pytest.mark.parametrize("role", ROLES)
def test_keepalive_closes_dead_connection_1011(role: str) -> None:
    # The raw peer never answers pings: a dead peer, for keepalive.
    options = dict(ping_interval=0.2, ping_timeout=0.2)
    with wssync_and_raw_peer(role, **options) as (connection, peer):
        start = time.monotonic()
        frames, close = peer.recv_until_close(timeout=5)
        elapsed = time.monotonic() - start
        assert close.close_code == 1011
        assert b"keepalive" in close.payload
        assert any(frame.opcode == PING for frame in frames)
        assert elapsed <= 0.4 + MARGIN
        with pytest.raises(wssync.ConnectionClosedError) as info:
            connection.recv(timeout=5)
        assert info.value.sent is not None and info.value.sent.code == 1011


def slow_reader_exchange(reader: str, size: int) -> None:
    """The reader doesn't read for 3 s while the other side sends 100 messages.

    Keepalive runs on both sides with ping_interval=0.5 and ping_timeout=0.5:
    about six pings go unanswered by the *application* meanwhile. They must
    be answered by the library, and all 100 messages must arrive.
    """
    options: dict[str, Any] = dict(ping_interval=0.5, ping_timeout=0.5)
    count = 100
    messages = [b"%03d:" % i + bytes([i]) * size for i in range(count)]
    outcome: queue.Queue[object] = queue.Queue()

    def handler(ws: wssync.ServerConnection) -> None:
        try:
            if reader == "client":
                for message in messages:
                    ws.send(message)
                outcome.put(ws.recv(timeout=20))
            else:
                time.sleep(3)  # the application is slow: no recv() for 3 s
                received = [ws.recv(timeout=5) for _ in range(count)]
                ws.send("ok" if received == messages else "mismatch")
                outcome.put(ws.recv(timeout=20))
        except BaseException as exc:
            outcome.put(exc)

    with running_server(handler, **options) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        with wssync.connect(uri, **options) as ws:
            if reader == "client":
                time.sleep(3)  # the application is slow: no recv() for 3 s
                received = [ws.recv(timeout=5) for _ in range(count)]
                assert received == messages
            else:
                for message in messages:
                    ws.send(message)
                assert ws.recv(timeout=10) == "ok"
            # Pongs come in order: once this ping's pong is in, so are those
            # of the keepalive pings sent before it (the last of which may
            # have come after the last message, unread yet).
            assert ws.ping().wait(5)
            ws.send("done")
            assert outcome.get(timeout=5) == "done"
            assert ws.latency > 0  # keepalive did run


def slow_readers_in_both_roles(size: int) -> None:
    """Run the exchange with a slow client and with a slow server, side by side.

    Side by side, the two 3 s pauses overlap: the test takes 3 s, not 6.
    """
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {
            reader: pool.submit(slow_reader_exchange, reader, size)
            for reader in ["client", "server"]
        }
        errors = {reader: future.exception(25) for reader, future in futures.items()}
    for reader, error in errors.items():
        if error is not None:
            raise AssertionError(f"{reader} reads late: {error!r}") from error


def test_keepalive_spares_slow_reader() -> None:
    # 100 messages of 100 bytes: the library buffers them all.
    slow_readers_in_both_roles(100)


def test_keepalive_spares_slow_reader_under_back_pressure() -> None:
    # 100 messages of 64 KiB: more than max_queue and max_size let the library
    # buffer, so the reader pushes back and pings wait behind data.
    slow_readers_in_both_roles(64 << 10)


# ------------------------------------------------- bounded close and shutdown


def test_close_returns_within_close_timeout_while_a_send_is_blocked(
    side: Side, blocked_writes: threading.Event
) -> None:
    a, b = socket.socketpair()  # b is a peer that stopped reading
    close_timeout = 0.5
    connection = make_connection(a, side, close_timeout=close_timeout)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            sending = pool.submit(connection.send, bytes(HUGE))
            receiving = pool.submit(connection.recv)
            assert blocked_writes.wait(5)
            start = time.monotonic()
            connection.close()
            elapsed = time.monotonic() - start
            assert elapsed <= close_timeout + MARGIN
            # The blocked send and the waiting recv return at once.
            with pytest.raises(wssync.ConnectionClosed):
                sending.result(timeout=1)
            with pytest.raises(wssync.ConnectionClosed):
                receiving.result(timeout=1)
        assert connection.state is wssync.State.CLOSED
        # close() from yet another thread, later: idempotent and immediate.
        closer = threading.Thread(target=connection.close)
        closer.start()
        closer.join(1)
        assert not closer.is_alive()
    finally:
        connection.close()
        b.close()


def test_shutdown_returns_within_close_timeout_while_sends_are_blocked(
    blocked_writes: threading.Event,
) -> None:
    close_timeout = 0.5
    ended: queue.Queue[tuple[str, BaseException | None]] = queue.Queue()

    def handler(ws: wssync.ServerConnection) -> None:
        try:
            if ws.path == "/stuck":
                ws.send(bytes(HUGE))  # the client never reads
            else:
                for message in ws:
                    ws.send(message)
        except wssync.ConnectionClosed as exc:
            ended.put((ws.path, exc))
        else:
            ended.put((ws.path, None))

    stuck = 4  # closed one after the other, they would take 4 times close_timeout
    with running_server(handler, close_timeout=close_timeout) as server:
        uri = f"ws://127.0.0.1:{server.port}/idle"
        with contextlib.ExitStack() as stack:
            peers = [
                stack.enter_context(RawPeer.connect(server.port, "/stuck"))
                for _ in range(stuck)
            ]
            idle = [stack.enter_context(wssync.connect(uri)) for _ in range(3)]
            for ws in idle:
                ws.send("ready")
                assert ws.recv(timeout=5) == "ready"
            assert blocked_writes.wait(5)
            start = time.monotonic()
            server.shutdown()
            elapsed = time.monotonic() - start
            assert elapsed <= close_timeout + 1.0, f"shutdown took {elapsed:.2f} s"
            # Every handler returned: shutdown joined them.
            endings = [ended.get(timeout=0.1) for _ in range(stuck + len(idle))]
            for path, exc in endings:
                if path == "/stuck":  # the blocked send gave up
                    assert isinstance(exc, wssync.ConnectionClosed), exc
                else:  # iteration ended quietly on the 1001 close
                    assert exc is None, exc
            # The idle clients were told the server is going away.
            for ws in idle:
                with pytest.raises(wssync.ConnectionClosedOK):
                    ws.recv(timeout=5)
                assert ws.close_code == 1001
            assert len(peers) == stuck


@pytest.mark.parametrize("role", ROLES)
def test_write_timeout_drops_a_peer_that_stops_reading(role: str) -> None:
    write_timeout = 0.3
    outcome: queue.Queue[tuple[BaseException | None, float]] = queue.Queue()

    def send_huge(ws: Connection) -> None:
        start = time.monotonic()
        try:
            ws.send(bytes(HUGE))
        except BaseException as exc:
            outcome.put((exc, time.monotonic() - start))
        else:
            outcome.put((None, time.monotonic() - start))

    if role == "server":
        with (
            running_server(send_huge, write_timeout=write_timeout) as server,
            RawPeer.connect(server.port),
        ):  # never reads
            error, elapsed = outcome.get(timeout=10)
    else:
        with RawServer() as raw, concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(raw.accept_handshake)  # never reads
            with wssync.connect(
                raw.uri, write_timeout=write_timeout, close_timeout=0.5
            ) as ws:
                future.result(timeout=5)
                send_huge(ws)
                error, elapsed = outcome.get(timeout=1)
                assert ws.state is wssync.State.CLOSED
    assert isinstance(error, wssync.ConnectionClosedError), error
    assert isinstance(error.__cause__, TimeoutError)
    assert write_timeout * 0.9 <= elapsed <= write_timeout + MARGIN


@pytest.mark.parametrize("how", ["peer-closes", "core-fails"])
@pytest.mark.parametrize("role", ROLES)
def test_recv_returns_at_close_timeout_when_peer_keeps_tcp_open(
    role: str, how: str
) -> None:
    close_timeout = 0.5
    with wssync_and_raw_peer(role, close_timeout=close_timeout) as (connection, peer):
        if how == "peer-closes":
            peer.send_close(1000)
        else:
            peer.send_frame(TEXT, b"\xff")  # invalid UTF-8: the core fails it
        _, close = peer.recv_until_close()
        assert close.close_code == (1000 if how == "peer-closes" else 1007)
        # The peer now keeps the TCP connection open and says nothing more.
        start = time.monotonic()
        with pytest.raises(wssync.ConnectionClosed):
            connection.recv(timeout=close_timeout + MARGIN)
        assert time.monotonic() - start <= close_timeout + MARGIN
        # The connection dropped the TCP connection itself.
        peer.expect_eof(timeout=1)


@pytest.mark.parametrize("role", ROLES)
def test_close_returns_at_close_timeout_when_peer_keeps_tcp_open(role: str) -> None:
    # close() bounds the closing handshake itself (it arms no watcher timer):
    # a peer that answers the close frame but never closes the TCP
    # connection costs it close_timeout at most, and a thread blocked in
    # recv() meanwhile (in recv() itself: see Connection._start) ends too.
    close_timeout = 0.5
    with wssync_and_raw_peer(role, close_timeout=close_timeout) as (connection, peer):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            receiver = pool.submit(connection.recv)
            start = time.monotonic()
            closer = pool.submit(connection.close)
            _, close = peer.recv_until_close()
            assert close.close_code == 1000
            peer.send_close(1000)
            # The peer now keeps the TCP connection open and says nothing more.
            closer.result(timeout=close_timeout + MARGIN)
            assert time.monotonic() - start <= close_timeout + MARGIN
            with pytest.raises(wssync.ConnectionClosedOK):
                receiver.result(timeout=MARGIN)
        assert connection.close_code == 1000
        # The connection dropped the TCP connection itself.
        peer.expect_eof(timeout=1)


@pytest.mark.parametrize("role", ROLES)
def test_close_from_another_thread_unblocks_receivers(role: str) -> None:
    # A real peer (wssync on the other end) answers the closing handshake.
    parked: queue.Queue[wssync.ServerConnection] = queue.Queue()
    release = threading.Event()

    def handler(ws: wssync.ServerConnection) -> None:
        if ws.path == "/park":  # the test drives this connection itself
            parked.put(ws)
            release.wait(30)
        else:
            echo(ws)

    path = "/park" if role == "server" else "/"
    with running_server(handler) as server:
        try:
            with wssync.connect(f"ws://127.0.0.1:{server.port}{path}") as client:
                connection: Connection = (
                    parked.get(timeout=5) if role == "server" else client
                )
                with concurrent.futures.ThreadPoolExecutor(4) as pool:
                    receivers = [pool.submit(connection.recv) for _ in range(3)]
                    closer = pool.submit(connection.close)
                    closer.result(timeout=5)
                    for receiver in receivers:
                        with pytest.raises(wssync.ConnectionClosedOK):
                            receiver.result(timeout=2)
                assert connection.close_code == 1000
        finally:
            release.set()


# ---------------------------------------------------------------------- SIGINT


class Child:
    """A Python subprocess whose stdout lines the test reads with deadlines."""

    def __init__(
        self, code: str, *args: str, stderr: Path, flags: tuple[str, ...] = ()
    ) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.stderr_path = stderr
        with open(stderr, "wb") as errors:
            self.proc = subprocess.Popen(
                [sys.executable, *flags, "-c", code, *args],
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                cwd=ROOT,
                env=env,
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 10) -> str:
        """Wait for a line starting with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {prefix!r} line from the child in time")
            if line is None:
                pytest.fail(f"the child ended before {prefix!r}: {self.errors()}")
            if line.startswith(prefix):
                return line

    def errors(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    children: list[Child] = []

    def start(code: str, *args: str, flags: tuple[str, ...] = ()) -> Child:
        stderr = tmp_path / f"stderr-{len(children)}"
        child = Child(code, *args, stderr=stderr, flags=flags)
        children.append(child)
        return child

    yield start
    for child in children:
        child.stop()


# In the children, "ready" is printed from inside wssync's interruptible
# wait, when the main thread is about to block in it: the signal then
# arrives while the main thread really is blocked, not before.
READY_WHEN_BLOCKED = """
import threading
import {module} as module

_original = module.wait_socket

def wait_socket(sock, write, timeout, waker):
    if threading.current_thread() is threading.main_thread() and not write:
        print("ready", flush=True)
    return _original(sock, write, timeout, waker)

module.wait_socket = wait_socket
"""

RECV_CHILD = (
    READY_WHEN_BLOCKED.format(module="wssync.connection")
    + """
import sys
import time
import wssync

with wssync.connect(sys.argv[1]) as ws:
    try:
        ws.recv()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
print("closed", ws.close_code, flush=True)
"""
)

SERVE_CHILD = (
    READY_WHEN_BLOCKED.format(module="wssync.server")
    + """
import wssync

def echo(ws):
    try:
        for message in ws:
            ws.send(message)
    except wssync.ConnectionClosed:
        pass

with wssync.serve(echo, "127.0.0.1", 0, close_timeout=2) as server:
    print("port", server.port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
print("stopped", flush=True)
"""
)


def test_sigint_interrupts_blocking_recv(spawn: Any) -> None:
    with running_server(echo) as server:
        child = spawn(RECV_CHILD, f"ws://127.0.0.1:{server.port}/")
        child.expect("ready")
        start = time.monotonic()
        child.proc.send_signal(signal.SIGINT)
        child.expect("interrupted", timeout=5)
        assert time.monotonic() - start < 1, "Ctrl-C took too long"
        # The connection stays usable for a clean close after Ctrl-C.
        assert child.expect("closed") == "closed 1000"
        assert child.proc.wait(10) == 0, child.errors()


def test_sigint_interrupts_serve_forever(spawn: Any) -> None:
    child = spawn(SERVE_CHILD)
    port = int(child.expect("port").split()[1])
    child.expect("ready")
    with wssync.connect(f"ws://127.0.0.1:{port}/") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        # Accepting this connection woke serve_forever(); it waits again.
        child.expect("ready")
        start = time.monotonic()
        child.proc.send_signal(signal.SIGINT)
        child.expect("interrupted", timeout=5)
        assert time.monotonic() - start < 1, "Ctrl-C took too long"
        # Leaving the with block shuts the server down: clients are told.
        with pytest.raises(wssync.ConnectionClosedOK):
            ws.recv(timeout=5)
        assert ws.close_code == 1001
    child.expect("stopped")
    assert child.proc.wait(10) == 0, child.errors()


# -------------------------------------------------------------------- threads


def numbered(sender: int, index: int) -> Any:
    """Message ``index`` of thread ``sender``: text or binary, whole or fragmented."""
    text = f"{sender}:{index}:" + "é" * (index % 7) * 50 + f":{sender}"
    kind = index % 4
    if kind == 0:
        return text
    if kind == 1:
        return text.encode()
    if kind == 2:
        return [text[:5], text[5:-3], text[-3:]]
    data = text.encode()
    return [data[:3], data[3:]]


def expected(sender: int, index: int) -> str | bytes:
    message = numbered(sender, index)
    if isinstance(message, list):
        return type(message[0])().join(message)
    return message  # type: ignore[no-any-return]


@pytest.mark.parametrize("role", ROLES)
def test_concurrent_senders_never_interleave(role: str) -> None:
    # 8 threads send on one connection, with permessage-deflate: frames of
    # two messages mixed up, or a compression context shared wrongly,
    # would show as protocol errors or garbled messages on the other side.
    threads, count = 8, 60
    received: queue.Queue[object] = queue.Queue()

    def send_all(connection: Connection) -> None:
        def sender(n: int) -> None:
            for i in range(count):
                connection.send(numbered(n, i))

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(sender, n) for n in range(threads)]:
                future.result(timeout=20)

    def receive_all(connection: Connection) -> None:
        try:
            received.put([connection.recv(timeout=20) for _ in range(threads * count)])
        except BaseException as exc:
            received.put(exc)

    def handler(ws: wssync.ServerConnection) -> None:
        if role == "server":
            send_all(ws)
        else:
            receive_all(ws)
        with contextlib.suppress(wssync.ConnectionClosed):
            ws.recv(timeout=20)  # until the client closes

    with (
        running_server(handler) as server,
        wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get(
            "Sec-WebSocket-Extensions", ""
        )
        if role == "server":
            receive_all(ws)
        else:
            send_all(ws)
        messages = received.get(timeout=30)
    assert isinstance(messages, list), messages
    # Every message whole, and each thread's messages in the order it sent them.
    by_sender: dict[int, list[object]] = {n: [] for n in range(threads)}
    for message in messages:
        text = message if isinstance(message, str) else message.decode()
        by_sender[int(text.split(":")[0])].append(message)
    for n in range(threads):
        assert by_sender[n] == [expected(n, i) for i in range(count)]


@pytest.mark.parametrize("role", ROLES)
def test_concurrent_receivers_get_each_message_once(role: str) -> None:
    # 4 threads call recv() on one connection while the peer sends 1000
    # messages (some fragmented), then closes.
    threads, count = 4, 1000
    outcome: queue.Queue[object] = queue.Queue()

    def send_all(connection: Connection) -> None:
        for i in range(count):
            connection.send(numbered(0, i))
        connection.close()

    def receive_all(connection: Connection) -> None:
        def receiver() -> list[Any]:
            got = []
            with contextlib.suppress(wssync.ConnectionClosedOK):
                while True:
                    got.append(connection.recv(timeout=20))
                    # Each message takes the application a moment: the
                    # others get their turn (without it one thread can drain
                    # the queue within a single GIL time slice).
                    time.sleep(0.0005)
            return got

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            futures = [pool.submit(receiver) for _ in range(threads)]
            outcome.put([future.result(timeout=30) for future in futures])

    def handler(ws: wssync.ServerConnection) -> None:
        try:
            if role == "server":
                receive_all(ws)
            else:
                send_all(ws)
        except BaseException as exc:
            outcome.put(exc)

    with (
        running_server(handler) as server,
        wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        if role == "server":
            send_all(ws)
        else:
            receive_all(ws)
        results = outcome.get(timeout=30)
    assert isinstance(results, list), results
    indexes = []
    for got in results:
        mine = [
            int((m if isinstance(m, str) else m.decode()).split(":")[1]) for m in got
        ]
        # Each thread got its messages in order...
        assert mine == sorted(mine)
        indexes += mine
        for index, message in zip(mine, got):
            assert message == expected(0, index)
    # ...and together they got every message exactly once.
    assert sorted(indexes) == list(range(count))
    # The receivers really competed (else the test would prove little).
    assert sum(1 for got in results if got) >= 2


@pytest.mark.parametrize("role", ROLES)
def test_recv_timeout_raises_timeout_error_and_connection_stays_usable(
    role: str,
) -> None:
    with wssync_and_raw_peer(role) as (connection, peer):
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            connection.recv(timeout=0.1)
        assert 0.1 <= time.monotonic() - start <= 0.1 + MARGIN
        with pytest.raises(TimeoutError):
            connection.recv(timeout=0)
        # Time runs out between the fragments of a message...
        peer.send_frame(TEXT, b"hel", fin=False)
        with pytest.raises(TimeoutError):
            connection.recv(timeout=0.1)
        peer.send_frame(CONT, b"lo")
        assert connection.recv(timeout=5) == "hello"
        # ...or in the middle of a frame.
        wire = build_frame(TEXT, "wörld".encode(), mask=peer.client)
        peer.sock.sendall(wire[:4])
        with pytest.raises(TimeoutError):
            connection.recv(timeout=0.1)
        peer.sock.sendall(wire[4:])
        assert connection.recv(timeout=5) == "wörld"
        # Several threads time out at once, none steals a message.
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            waits = [pool.submit(connection.recv, timeout=0.1) for _ in range(3)]
            for wait in waits:
                with pytest.raises(TimeoutError):
                    wait.result(timeout=5)
        # Both directions still work.
        peer.send_frame(TEXT, b"again")
        assert connection.recv(timeout=5) == "again"
        connection.send("still open")
        assert peer.recv_frame().payload == b"still open"
        assert connection.state is wssync.State.OPEN


# ----------------------------------------------------------------------- leaks


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_thread_or_socket_leak_after_hundreds_of_connections() -> None:
    # Warm up: the process-wide watcher and this thread's waker exist from now on.
    with (
        running_server(echo) as server,
        wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws,
    ):
        ws.send("warm")
        ws.recv(timeout=5)
    gc.collect()
    baseline_threads = set(threading.enumerate())

    batches, batch = 6, 50
    server = wssync.serve(echo, "127.0.0.1", 0, close_timeout=2)
    server.start()
    # The server's own descriptors (listening socket, waker) count in the
    # baseline: this test is about what connections leave behind.
    gc.collect()
    baseline_fds = open_fds()
    left_open: list[wssync.ClientConnection] = []
    try:
        uri = f"ws://127.0.0.1:{server.port}/"
        for _ in range(batches):
            clients = [wssync.connect(uri) for _ in range(batch)]
            for index, ws in enumerate(clients):
                ws.send(f"hello {index}")
            for index, ws in enumerate(clients):
                assert ws.recv(timeout=5) == f"hello {index}"
            # Half close; the server closes the other half at shutdown.
            for ws in clients[::2]:
                ws.close()
            left_open += clients[1::2]
        assert len(server.connections) == batches * batch // 2
    finally:
        server.shutdown()
    for ws in left_open:
        with pytest.raises(wssync.ConnectionClosedOK):
            ws.recv(timeout=5)
        ws.close()
    del left_open, clients, ws

    # Threads that shutdown() joined may take a moment to vanish from
    # threading.enumerate(); join them rather than sleep.
    for thread in set(threading.enumerate()) - baseline_threads:
        thread.join(5)
    assert set(threading.enumerate()) <= baseline_threads
    # Sockets: both sides of every connection and the handler threads'
    # wakers are gone, and the listening socket is closed (the server's
    # waker is test_shutdown_releases_the_server_sockets' business).
    gc.collect()
    assert open_fds() <= baseline_fds - 1


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_shutdown_releases_the_server_sockets() -> None:
    gc.collect()
    baseline_fds = open_fds()
    server = wssync.serve(echo, "127.0.0.1", 0)
    server.start()
    with wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    server.shutdown()
    gc.collect()
    # The application may keep the server object (say, as an attribute):
    # once shut down, it holds no file descriptor.
    assert open_fds() <= baseline_fds, server


def test_handler_exception_closes_1011_is_logged_and_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(ws: wssync.ServerConnection) -> None:
        message = ws.recv()
        if message == "boom":
            raise RuntimeError("boom")
        ws.send(message)

    with (
        caplog.at_level(logging.ERROR, logger="wssync"),
        running_server(handler) as server,
    ):
        uri = f"ws://127.0.0.1:{server.port}/"
        for _ in range(3):
            with wssync.connect(uri) as ws:
                ws.send("boom")
                with pytest.raises(wssync.ConnectionClosedError) as info:
                    ws.recv(timeout=5)
                assert info.value.code == 1011
        with wssync.connect(uri) as ws:
            ws.send("fine")
            assert ws.recv(timeout=5) == "fine"
    failures = [
        record
        for record in caplog.records
        if record.exc_info and isinstance(record.exc_info[1], RuntimeError)
    ]
    assert len(failures) == 3
    assert all(record.levelno >= logging.ERROR for record in failures)


# -------------------------------------------------------------------- warnings


def test_connect_without_with_emits_no_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with running_server(echo) as server:
            ws = wssync.connect(f"ws://127.0.0.1:{server.port}/")
            ws.send("no with")
            assert ws.recv(timeout=5) == "no with"
            del ws
            gc.collect()
        # The server closed it at shutdown; nobody called close().
        gc.collect()
    assert [str(w.message) for w in caught] == []


NO_WITH_CHILD = """
import sys
import wssync

ws = wssync.connect(sys.argv[1])
ws.send("no with")
print(ws.recv(timeout=5), flush=True)
"""


def test_connect_without_with_emits_no_warning_at_exit(spawn: Any) -> None:
    # A script that never closes its connection, in development mode where
    # ResourceWarning is shown, and with warnings as errors.
    with running_server(echo) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        child = spawn(NO_WITH_CHILD, uri, flags=("-X", "dev", "-W", "error"))
        assert child.expect("no with") == "no with"
        assert child.proc.wait(10) == 0
        assert child.errors() == ""
