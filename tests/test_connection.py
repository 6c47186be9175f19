"""The blocking Connection, on socket pairs: each test runs as client and as server."""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from pairs import make_connection

import wssync
from wssync import connection as connection_module
from wssync.client import ClientConnection
from wssync.connection import Connection
from wssync.sansio.frames import Frame, Opcode, serialize_frame
from wssync.sansio.protocol import Protocol, Side
from wssync.server import ServerConnection

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def pair(side: Side) -> Iterator[tuple[Connection, Connection]]:
    """The connection under test and its peer, playing the other side."""
    a, b = socket.socketpair()
    local = make_connection(a, side)
    remote = make_connection(b, Side.SERVER if side is Side.CLIENT else Side.CLIENT)
    yield local, remote
    local.close()
    remote.close()


# --------------------------------------------------------------------- send / recv


def test_send_recv_text_and_binary(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    local.send("café ☕")
    local.send(b"\x00\xff")
    local.send(bytearray(b"ba"))
    local.send(memoryview(b"mv"))
    assert remote.recv() == "café ☕"
    assert remote.recv() == b"\x00\xff"
    assert remote.recv() == b"ba"
    assert remote.recv() == b"mv"


def test_send_text_flag(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    local.send("é".encode(), text=True)
    local.send("é", text=False)
    assert remote.recv() == "é"
    assert remote.recv() == "é".encode()


def test_recv_decode(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    local.send("é")
    local.send("é".encode())
    assert remote.recv(decode=False) == "é".encode()
    assert remote.recv(decode=True) == "é"


def test_send_fragmented_iterable(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    local.send(iter(["héllo ", "wörld"]))
    local.send([b"\x01", b"\x02", b"\x03"])
    assert remote.recv() == "héllo wörld"
    assert remote.recv() == b"\x01\x02\x03"


def test_send_mixed_fragments_rejected(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    with pytest.raises(TypeError):
        local.send(["text", b"bytes"])
    # The half-sent message can't be finished: the connection is failed.
    with pytest.raises(wssync.ConnectionClosedError):
        remote.recv()


def test_send_unsupported_type(pair: tuple[Connection, Connection]) -> None:
    local, _ = pair
    with pytest.raises(TypeError):
        local.send(42)  # type: ignore[arg-type]


def test_recv_streaming_yields_fragments(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    local.send(["a", "é", "c"])
    assert "".join(remote.recv_streaming()) == "aéc"
    local.send([b"1", b"2"])
    assert list(remote.recv_streaming()) == [b"1", b"2"]
    local.send(b"single")
    assert list(remote.recv_streaming(decode=True)) == ["single"]


def test_recv_streaming_before_message_ends(
    pair: tuple[Connection, Connection],
) -> None:
    local, remote = pair
    release = threading.Event()

    def fragments() -> Iterator[bytes]:
        yield b"first"
        release.wait(5)
        yield b"second"

    sender = threading.Thread(target=local.send, args=(fragments(),))
    sender.start()
    stream = remote.recv_streaming()
    assert next(stream) == b"first"  # arrives while the sender is blocked
    release.set()
    assert b"".join(stream) == b"second"
    sender.join(5)


def test_large_message(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    payload = bytes(range(256)) * 4096  # 1 MiB
    sender = threading.Thread(target=local.send, args=(payload,))
    sender.start()
    assert remote.recv() == payload
    sender.join(5)


def _burst(remote: Connection, messages: list[bytes]) -> None:
    """Make ``messages`` arrive at once: one write of all their frames."""
    mask = remote.protocol.side is Side.CLIENT
    remote.socket.sendall(
        b"".join(
            b"".join(serialize_frame(Frame(Opcode.BINARY, data), mask=mask))
            for data in messages
        )
    )


def _count_writes(monkeypatch: pytest.MonkeyPatch, sock: socket.socket) -> list[int]:
    """Record the bytes of every write the connections make on ``sock``."""
    writes: list[int] = []
    write = Connection._write

    def counting(connection: Connection, chunks: list[bytes | memoryview]) -> int:
        sent = write(connection, chunks)
        if connection.socket is sock:
            writes.append(sent)
        return sent

    monkeypatch.setattr(Connection, "_write", counting)
    return writes


def _echo_burst(
    pair: tuple[Connection, Connection],
    monkeypatch: pytest.MonkeyPatch,
    messages: list[bytes],
) -> list[int]:
    """Send ``messages`` at once, answer each as it is taken, check the
    answers; return the bytes of each write that carried them."""
    local, remote = pair
    monkeypatch.setattr(connection_module, "CORK_DELAY", 60)  # no timer flush
    monkeypatch.setattr(connection_module, "CORK_WINDOW", 60)  # however slow
    writes = _count_writes(monkeypatch, local.socket)
    _burst(remote, messages)
    for _ in messages:
        local.send(local.recv())
    assert [remote.recv(timeout=5) for _ in messages] == messages
    return writes


def test_replies_to_a_burst_leave_together(
    pair: tuple[Connection, Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Messages that arrived together get their replies in one system call.
    messages = [bytes([i]) * (i + 1) for i in range(20)]
    assert len(_echo_burst(pair, monkeypatch, messages)) == 1


def test_replies_to_a_long_burst_leave_by_cork_chunks(
    pair: tuple[Connection, Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    # At most CORK_CHUNKS replies are held back: the peer gets the first
    # ones while the rest are being answered.
    local, _ = pair
    chunks = connection_module.CORK_CHUNKS
    messages = [b"%09d" % i for i in range(2 * chunks + 6)]
    writes = _echo_burst(pair, monkeypatch, messages)
    frame = 2 + (4 if local.protocol.side is Side.CLIENT else 0) + 9
    # The reply that finds CORK_CHUNKS held back leaves with them.
    assert writes == [(chunks + 1) * frame, (chunks + 1) * frame, 4 * frame]


def test_reply_held_back_leaves_without_another_recv(
    pair: tuple[Connection, Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reply held back because more messages wait still leaves, even if
    # the application never comes back for them.
    local, remote = pair
    monkeypatch.setattr(connection_module, "CORK_DELAY", 0.5)
    monkeypatch.setattr(connection_module, "CORK_WINDOW", 60)
    writes = _count_writes(monkeypatch, local.socket)
    _burst(remote, [b"first", b"second"])
    local.send(local.recv())
    assert writes == []  # held back: "second" waits to be received
    assert remote.recv(timeout=5) == b"first"


def test_no_holding_back_for_an_application_that_doesnt_receive(
    pair: tuple[Connection, Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Messages waiting while the application only sends (a producer) don't
    # delay what it sends.
    local, remote = pair
    monkeypatch.setattr(connection_module, "CORK_DELAY", 0.5)
    remote.send(b"unread")
    assert remote.ping().wait(5)  # the watcher read "unread" before the pong
    writes = _count_writes(monkeypatch, local.socket)
    local.send(b"news")
    assert len(writes) == 1
    assert remote.recv(timeout=5) == b"news"


def test_message_too_big_closes_1009(side: Side) -> None:
    a, b = socket.socketpair()
    local = make_connection(a, side, max_size=1000)
    remote = make_connection(b, Side.SERVER if side is Side.CLIENT else Side.CLIENT)
    try:
        remote.send(b"x" * 1001)
        with pytest.raises(wssync.ConnectionClosedError) as info:
            local.recv()
        assert info.value.sent is not None and info.value.sent.code == 1009
        assert isinstance(info.value.__cause__, wssync.PayloadTooBig)
    finally:
        local.close()
        remote.close()


def test_recv_timeout_leaves_connection_usable(
    pair: tuple[Connection, Connection],
) -> None:
    local, remote = pair
    with pytest.raises(TimeoutError):
        remote.recv(timeout=0.05)
    local.send("after")
    assert remote.recv(timeout=5) == "after"


def test_recv_timeout_zero_returns_buffered(
    pair: tuple[Connection, Connection],
) -> None:
    local, remote = pair
    local.send("ready")
    assert remote.recv(timeout=5) == "ready"
    local.send("again")
    assert remote.ping().wait(5)  # a round trip: "again" arrived before the pong
    assert remote.recv(timeout=0) == "again"


# ------------------------------------------------------------------------ closing


def test_iteration_stops_on_normal_close(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    local.send("one")
    local.send("two")
    local.close()
    assert list(remote) == ["one", "two"]
    assert remote.close_code == 1000
    assert local.state is wssync.State.CLOSED
    assert remote.state is wssync.State.CLOSED


def test_iteration_raises_on_abnormal_close(
    pair: tuple[Connection, Connection],
) -> None:
    local, remote = pair
    local.send("one")
    local._abort(None)  # the TCP connection drops without a closing handshake
    received = []
    with pytest.raises(wssync.ConnectionClosedError) as info:
        for message in remote:
            received.append(message)
    assert received == ["one"]
    assert info.value.code == 1006


def test_close_code_and_reason(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    assert local.close_code is None and local.close_reason is None
    remote.close(4000, "bye")
    with pytest.raises(wssync.ConnectionClosedError) as info:
        local.recv()
    assert info.value.code == 4000 and info.value.reason == "bye"
    assert local.close_code == 4000 and local.close_reason == "bye"
    assert remote.close_code == 4000


def test_close_is_idempotent(pair: tuple[Connection, Connection]) -> None:
    local, _ = pair
    local.close()
    local.close()
    assert local.state is wssync.State.CLOSED


def test_send_after_close_raises(pair: tuple[Connection, Connection]) -> None:
    local, _ = pair
    local.close()
    with pytest.raises(wssync.ConnectionClosedOK):
        local.send("late")
    with pytest.raises(wssync.ConnectionClosed):
        local.ping()


def test_messages_before_close_still_returned(
    pair: tuple[Connection, Connection],
) -> None:
    local, remote = pair
    local.send("kept")
    local.close()
    remote.close()  # the peer already closed; this completes at once
    assert remote.recv() == "kept"
    with pytest.raises(wssync.ConnectionClosedOK):
        remote.recv()


def recv_in_thread(
    connection: Connection,
) -> tuple[threading.Thread, list[BaseException]]:
    """Call ``connection.recv()`` in a new thread; collect what it raises."""
    outcome: list[BaseException] = []
    started = threading.Event()

    def receive() -> None:
        started.set()
        try:
            connection.recv()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=receive)
    thread.start()
    started.wait(5)
    return thread, outcome


def _in_thread(function: Callable[[], object]) -> list[object]:
    """Run ``function`` in a new thread (blocking reads aren't for the main
    thread) and return what it returned or raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(function())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return outcome


@pytest.mark.parametrize("big", [False, True], ids=["burst", "big message"])
def test_blocking_read_is_followed_by_a_read_that_doesnt_wait(
    pair: tuple[Connection, Connection], monkeypatch: pytest.MonkeyPatch, big: bool
) -> None:
    # The read that blocks asks for BLOCKING_READ_SIZE bytes; when it gets
    # them all, what else came is read at once and fed in the same pass:
    # joined to the first bytes when it is little (frames that span both
    # reads are parsed whole), after them when it is more than
    # JOIN_READS_LIMIT (a big payload is copied once, into place).
    local, remote = pair
    limit = connection_module.JOIN_READS_LIMIT
    if big:
        messages = [b"x" * (limit + 1000)]
    else:
        messages = [bytes([i]) * 1000 for i in range(20)]
    feeds: list[int] = []
    receive_data = Protocol.receive_data

    def counting(protocol: Protocol, data: bytes) -> None:
        if protocol is local.protocol:
            feeds.append(len(data))
        receive_data(protocol, data)

    monkeypatch.setattr(Protocol, "receive_data", counting)
    # Take the reader role as recv() does before it blocks, so that the
    # watcher doesn't read the burst itself.
    with local._lock:
        assert local._reader is None
        local._reader = connection_module._BLOCKED
    _burst(remote, messages)
    (first_message,) = _in_thread(lambda: local._read_blocking_for(True))
    assert isinstance(first_message, connection_module._Message)
    assert first_message.chunks == messages[:1]
    assert [local.recv(timeout=5) for _ in messages[1:]] == messages[1:]
    first = connection_module.BLOCKING_READ_SIZE
    if big:
        assert feeds[:1] == [first]
        assert feeds[1] > limit
    else:
        header = 4 + (4 if local.protocol.side is Side.SERVER else 0)  # masked
        assert feeds == [sum(header + len(message) for message in messages)]


class _ResettingSocket(socket.socket):
    """A socket whose ``recv_into()`` fails as if the peer had reset, once
    ``reset`` is set."""

    reset = False

    def recv_into(self, *args: Any) -> int:
        if self.reset:
            raise ConnectionResetError("reset by the test")
        return super().recv_into(*args)


def test_error_of_the_read_after_a_full_blocking_read_is_reported(side: Side) -> None:
    # The read right after a full blocking read fails: what came is kept,
    # and the error ends the connection (the next read doesn't wait for
    # more data that a broken connection would never bring).
    a, b = socket.socketpair()
    sock = _ResettingSocket(a.family, a.type, a.proto, fileno=a.detach())
    local = make_connection(sock, side)
    try:
        mask = side is Side.SERVER  # frames from the peer
        b.sendall(b"".join(serialize_frame(Frame(Opcode.BINARY, b"first"), mask=mask)))
        # A read that emptied the socket: the next one blocks in recv().
        assert _in_thread(local.recv) == [b"first"]
        assert local._drained
        sock.reset = True
        # Take the reader role as recv() does before it blocks, so that the
        # watcher doesn't read the frame itself.
        with local._lock:
            assert local._reader is None
            local._reader = connection_module._BLOCKED
        b.sendall(
            b"".join(serialize_frame(Frame(Opcode.BINARY, b"x" * 600), mask=mask))
        )
        # The first 512 bytes: not a whole message yet.
        assert _in_thread(lambda: local._read_blocking_for(True)) == [None]
        (outcome,) = _in_thread(local.recv)
        assert isinstance(outcome, wssync.ConnectionClosedError)
    finally:
        local.close()
        b.close()


def test_close_from_another_thread_unblocks_recv(
    pair: tuple[Connection, Connection],
) -> None:
    local, _ = pair
    thread, outcome = recv_in_thread(local)
    local.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], wssync.ConnectionClosedOK)


def test_peer_close_noticed_without_recv(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    remote.close()
    # No thread of the local side reads: the watcher notices the close.
    deadline = time.monotonic() + 1
    with local._lock:
        local._waiting += 1  # be notified, as a thread in recv() would
        try:
            while local.protocol.state is not wssync.State.CLOSED:
                assert time.monotonic() < deadline
                local._condition().wait(deadline - time.monotonic())
        finally:
            local._waiting -= 1
    assert local.close_code == 1000


def test_close_returns_when_peer_never_answers(side: Side) -> None:
    a, b = socket.socketpair()
    local = make_connection(a, side, close_timeout=0.3)
    try:
        start = time.monotonic()
        local.close()  # b never reads nor answers
        assert time.monotonic() - start < 2
        assert local.state is wssync.State.CLOSED
        assert local.close_code == 1006
    finally:
        b.close()


# ---------------------------------------------------------------------- ping/pong


# The server's close frame answering the client's, then its end of stream.
_CLOSE_ANSWER = b"".join(serialize_frame(Frame(Opcode.CLOSE, b"\x03\xe8"), mask=False))


def _answer_close(peer: socket.socket) -> threading.Thread:
    """Answer the client's close frame from ``peer``, then close, in a thread.

    Only once the close frame came: an answer sent sooner may be read by
    the watcher before close() looks.
    """

    def answer() -> None:
        peer.settimeout(5)
        received = b""
        while len(received) < 8:  # a masked close frame with a code
            received += peer.recv(8 - len(received))
        peer.sendall(_CLOSE_ANSWER)
        peer.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=answer)
    thread.start()
    return thread


def test_client_close_reads_the_answer_and_the_end_of_stream_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The end of stream follows the server's close frame (RFC 6455 §7.1.1):
    # close() reads it in the same read call, without a second round
    # through its checks.
    a, b = socket.socketpair()
    with b:
        client = make_connection(a, Side.CLIENT)
        answering = _answer_close(b)
        reads: list[float | None] = []
        real_read = client._read

        def read(waker: Any, deadline: float | None) -> None:
            reads.append(deadline)
            real_read(waker, deadline)

        monkeypatch.setattr(client, "_read", read)
        client.close()
        answering.join(5)
        assert client.close_code == 1000
        assert len(reads) == 1


def test_client_close_leaves_the_half_close_to_closing_the_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Once the server's end of stream came, close() closes the socket at
    # once: a shutdown(SHUT_WR) before that would be a system call for
    # nothing. The server still sees the close frame, then the end of stream.
    a, b = socket.socketpair()
    with b:
        client = make_connection(a, Side.CLIENT)
        shutdowns: list[int] = []
        real_shutdown = socket.socket.shutdown

        def shutdown(sock: socket.socket, how: int) -> None:
            shutdowns.append(how)
            real_shutdown(sock, how)

        monkeypatch.setattr(socket.socket, "shutdown", shutdown)
        answering = _answer_close(b)
        client.close()
        answering.join(5)
        assert client.close_code == 1000
        assert shutdowns == [socket.SHUT_WR]  # the peer's, none of the client's
        assert client.socket.fileno() == -1
        assert b.recv(64) == b""  # the client's end of stream


def test_server_close_half_closes_before_the_client_does() -> None:
    # A server closes the TCP connection first (RFC 6455 §7.1.1): once the
    # close frames crossed, it sends its end of stream without waiting for
    # the client's; a client that waits for it must get it.
    a, b = socket.socketpair()
    with b:
        server = make_connection(a, Side.SERVER, close_timeout=10)
        closing = threading.Thread(target=server.close)
        closing.start()
        try:
            b.settimeout(5)
            assert b.recv(64)[:1] == b"\x88"  # the server's close frame
            b.sendall(
                b"".join(serialize_frame(Frame(Opcode.CLOSE, b"\x03\xe8"), mask=True))
            )
            assert b.recv(64) == b""  # the server's end of stream, at once
        finally:
            b.close()
            closing.join(10)
        assert not closing.is_alive()
        assert server.close_code == 1000


def test_ping_event_set_by_pong(pair: tuple[Connection, Connection]) -> None:
    local, _ = pair
    # The peer has no thread in recv(): its watcher answers.
    assert local.ping().wait(1)
    assert local.ping(b"custom").wait(1)
    assert local.ping("text").wait(1)


def test_ping_duplicate_payload_rejected(side: Side) -> None:
    a, b = socket.socketpair()
    local = make_connection(a, side)
    try:
        local.ping(b"same")  # b never answers
        with pytest.raises(RuntimeError):
            local.ping(b"same")
    finally:
        b.close()
        local.close()


def test_unsolicited_pong(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    local.pong(b"heartbeat")
    local.send("after pong")
    assert remote.recv() == "after pong"


def test_peer_ping_answered_within_100ms_without_recv(side: Side) -> None:
    a, b = socket.socketpair()
    local = make_connection(a, side)
    try:
        peer_side = Side.SERVER if side is Side.CLIENT else Side.CLIENT
        ping = Frame(Opcode.PING, b"probe")
        b.sendall(b"".join(serialize_frame(ping, mask=peer_side is Side.CLIENT)))
        b.settimeout(0.1)  # the promise: answered within 100 ms
        parser = Protocol(peer_side)
        parser.receive_data(b.recv(100))
        assert parser.events_received() == [Frame(Opcode.PONG, b"probe")]
    finally:
        b.close()
        local.close()


def test_keepalive_measures_latency(side: Side) -> None:
    a, b = socket.socketpair()
    local = make_connection(a, side, ping_interval=0.05, ping_timeout=2)
    remote = make_connection(b, Side.SERVER if side is Side.CLIENT else Side.CLIENT)
    try:
        assert local.latency == 0
        deadline = time.monotonic() + 5
        while local.latency == 0:
            assert time.monotonic() < deadline
            # Waiting for the watcher's measurement: a bounded wait on the
            # peer's messages, which never come, paces the loop.
            with pytest.raises(TimeoutError):
                local.recv(timeout=0.02)
        assert 0 < local.latency < 1
    finally:
        local.close()
        remote.close()


def test_keepalive_closes_dead_connection_1011(side: Side) -> None:
    a, b = socket.socketpair()  # b never answers pings
    local = make_connection(a, side, ping_interval=0.05, ping_timeout=0.1)
    try:
        with pytest.raises(wssync.ConnectionClosedError) as info:
            local.recv(timeout=5)
        assert info.value.sent is not None and info.value.sent.code == 1011
        assert "keepalive" in info.value.sent.reason
    finally:
        b.close()
        local.close()


# ----------------------------------------------------------------------- threads


def test_concurrent_sends_never_interleave(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    count = 50

    def sender(n: int) -> None:
        for i in range(count):
            local.send([f"{n}:{i}:", "x" * 100, f":{n}"])

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    seen: dict[int, list[int]] = {n: [] for n in range(8)}
    for _ in range(8 * count):
        message = remote.recv(timeout=10)
        assert isinstance(message, str)
        head, body, tail = message.split(":", 2)[0], message, message.rsplit(":", 1)[1]
        assert head == tail, message
        assert body == f"{head}:{body.split(':')[1]}:" + "x" * 100 + f":{head}"
        seen[int(head)].append(int(message.split(":")[1]))
    for thread in threads:
        thread.join(5)
    assert all(order == list(range(count)) for order in seen.values())


def test_concurrent_recv_each_message_once(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    total = 400
    received: list[list[str]] = [[] for _ in range(4)]

    def receiver(index: int) -> None:
        try:
            while True:
                message = remote.recv()
                assert isinstance(message, str)
                received[index].append(message)
        except wssync.ConnectionClosed:
            pass

    threads = [threading.Thread(target=receiver, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for i in range(total):
        local.send(str(i))
    local.close()
    for thread in threads:
        thread.join(10)
    everything = sorted(int(m) for got in received for m in got)
    assert everything == list(range(total))


# ------------------------------------------------------------------- attributes


def test_attributes(pair: tuple[Connection, Connection]) -> None:
    local, _ = pair
    assert isinstance(local.id, uuid.UUID)
    assert isinstance(local.logger, logging.Logger)
    assert local.state is wssync.State.OPEN
    assert local.subprotocol is None
    assert local.latency == 0
    assert "OPEN" in repr(local)


def test_id_is_stable_and_unique(pair: tuple[Connection, Connection]) -> None:
    local, remote = pair
    assert local.id == local.id
    assert local.id != remote.id
    assert str(local.id) in repr(local)


def test_applications_can_attach_attributes(
    pair: tuple[Connection, Connection],
) -> None:
    # Connections use slots for their own state, but keep a __dict__ for
    # the application's (a user name, a room...).
    local, _ = pair
    local.user = "alice"  # type: ignore[attr-defined]
    assert local.user == "alice"  # type: ignore[attr-defined]


def test_context_manager_closes(side: Side) -> None:
    a, b = socket.socketpair()
    remote = make_connection(b, Side.SERVER if side is Side.CLIENT else Side.CLIENT)
    with make_connection(a, side) as local:
        local.send("in")
    assert local.state is wssync.State.CLOSED
    assert list(remote) == ["in"]
    remote.close()


def test_unclosed_connection_no_warning(side: Side) -> None:
    a, b = socket.socketpair()
    connection = make_connection(a, side)
    peer = make_connection(b, Side.SERVER if side is Side.CLIENT else Side.CLIENT)
    peer.close()  # the peer ends it; nobody closes `connection`
    del connection
    gc.collect()  # pytest turns a ResourceWarning into an error
    peer.close()


def test_server_connection_class() -> None:
    assert issubclass(ServerConnection, Connection)
    assert issubclass(ClientConnection, Connection)


class RecordingWatcher:
    """Stands in for the watcher: records refreshes, runs no timers."""

    def __init__(self) -> None:
        self.refreshes: list[bool] = []

    def refresh(self, conn: object, *, lazy: bool = False) -> None:
        self.refreshes.append(lazy)

    def call_at(self, when: float, callback: object) -> None:
        pass


def test_start_doesnt_wake_the_watcher(side: Side) -> None:
    # The application reads or sends at once: a new connection asks the
    # watcher to look within LAZY_DELAY, without waking it.
    a, b = socket.socketpair()
    with a, b:
        connection = Connection(a, Protocol(side), ping_interval=None)
        watcher = RecordingWatcher()
        connection._watcher = watcher  # type: ignore[assignment]
        connection._start()
        assert watcher.refreshes == [True]


def test_keepalive_check_right_after_reading_resumes(side: Side) -> None:
    # Reading paused by back-pressure leaves the peer's frames (its pongs)
    # unread in the socket. The keepalive check that comes right after the
    # application took messages, before the next read, must not take the
    # time of the last frame read before the pause for silence.
    a, b = socket.socketpair()
    local = make_connection(
        a,
        side,
        max_queue=1,
        max_size=64,
        ping_interval=60,
        ping_timeout=1,
        close_timeout=0.1,  # the peer is a bare socket: it won't answer
    )
    try:
        mask = side is Side.SERVER  # frames from the peer
        frame = b"".join(serialize_frame(Frame(Opcode.BINARY, b"x" * 64), mask=mask))
        local._receive(memoryview(frame))  # as if read: the queue is full
        assert local._paused()
        with local._lock:
            local._last_frame_at -= 100  # read long ago
            local._awaiting_pong_since = time.monotonic() - 100  # overdue
        assert local.recv(timeout=5) == b"x" * 64  # reading resumes
        local._check_pong()
        assert local.state is wssync.State.OPEN
    finally:
        local.close()
        b.close()


@pytest.mark.parametrize("blocking_reads", [True, False], ids=["recv", "poll"])
def test_wait_in_recv_ends_when_the_connection_is_dropped(
    side: Side, blocking_reads: bool
) -> None:
    # A thread waits for a message, in recv() itself (blocking reads) or in
    # poll(); close() from another thread, whose closing handshake the
    # peer never answers, drops the connection: the wait ends at once.
    a, b = socket.socketpair()
    local = make_connection(a, side, close_timeout=0.2, blocking_reads=blocking_reads)
    reader, outcome = recv_in_thread(local)
    try:
        local.close()
        reader.join(5)
        assert not reader.is_alive()
        assert len(outcome) == 1
        assert isinstance(outcome[0], wssync.ConnectionClosedError)
    finally:
        b.close()
