"""Hostile or broken input: a clean refusal, and the server keeps serving.

Issue 4, "Hostile or broken input". Misbehaving peers are scripted raw
sockets (``tests/rawpeer.py``): a WebSocket library would refuse to
misbehave. Every test names the bullet it covers:

- malformed handshakes: ``test_handshake_*`` (400, 426, 405, 431, garbage);
- ``test_slowloris_dropped_at_open_timeout_while_others_are_served``;
- ``test_max_connections_503``, ``test_origins_403``;
- after the handshake: ``test_protocol_violation_closes_1002``,
  ``test_invalid_utf8_closes_1007``, ``test_message_over_max_size_closes_1009``,
  ``test_deflate_bomb_stopped_at_max_size_with_bounded_memory``,
  ``test_flood_without_reading_keeps_memory_bounded``;
- client side: ``test_client_*``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from rawpeer import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    RawPeer,
    RawServer,
    build_frame,
    build_request,
    close_payload,
    running_server,
)

import wssync

pytestmark = pytest.mark.timeout(30)

# Margin over a configured timeout before a test calls it missed: loose
# enough for a loaded 2-core CI machine, tight enough to catch a wait that
# ignores the timeout (those wait for a default of 10 s, or forever).
MARGIN = 1.5


def echo(ws: wssync.ServerConnection) -> None:
    with contextlib.suppress(wssync.ConnectionClosed):
        for message in ws:
            ws.send(message)


class Recorder:
    """A handler that echoes and records how each connection ended."""

    def __init__(self) -> None:
        self.endings: queue.Queue[BaseException | None] = queue.Queue()

    def __call__(self, ws: wssync.ServerConnection) -> None:
        try:
            for message in ws:
                ws.send(message)
        except wssync.ConnectionClosed as exc:
            self.endings.put(exc)
        else:
            self.endings.put(None)

    def ending(self, timeout: float = 5) -> BaseException | None:
        return self.endings.get(timeout=timeout)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[wssync.ThreadingServer]:
    with running_server(recorder, open_timeout=5, close_timeout=2) as server:
        yield server


def raw_connection(port: int) -> RawPeer:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return RawPeer(sock, client=True)


def assert_refused(peer: RawPeer, status: int | set[int]) -> dict[str, str]:
    """The server answers with ``status`` and closes the connection."""
    got, fields, body = peer.read_response()
    expected = {status} if isinstance(status, int) else status
    assert got in expected, (got, body)
    assert fields.get("connection") in ("close", "Upgrade, close")
    peer.expect_eof()
    return fields


def assert_serves(port: int) -> None:
    """The server still completes handshakes and echoes."""
    with wssync.connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


# --------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("headers", "omit"),
    [
        ([], ("Sec-WebSocket-Key",)),
        ([("Sec-WebSocket-Key", "not base64!")], ("Sec-WebSocket-Key",)),
        ([("Sec-WebSocket-Key", "c2hvcnQ=")], ("Sec-WebSocket-Key",)),  # 5 bytes
        (
            [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")] * 2,
            ("Sec-WebSocket-Key",),
        ),
    ],
    ids=["missing", "not-base64", "too-short", "repeated"],
)
def test_handshake_bad_key_400(
    server: wssync.ThreadingServer, headers: list[tuple[str, str]], omit: tuple[str]
) -> None:
    with raw_connection(server.port) as peer:
        request, _ = build_request("localhost", headers=headers, omit=omit)
        peer.sock.sendall(request)
        assert_refused(peer, 400)
    assert_serves(server.port)


@pytest.mark.parametrize("version", ["8", "12", "14", "1000"])
def test_handshake_unsupported_version_426(
    server: wssync.ThreadingServer, version: str
) -> None:
    with raw_connection(server.port) as peer:
        request, _ = build_request(
            "localhost",
            headers=[("Sec-WebSocket-Version", version)],
            omit=("Sec-WebSocket-Version",),
        )
        peer.sock.sendall(request)
        fields = assert_refused(peer, 426)
        # RFC 6455 §4.4: the answer lists the versions the server speaks.
        assert fields["sec-websocket-version"] == "13"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_handshake_non_get_405(server: wssync.ThreadingServer, method: str) -> None:
    with raw_connection(server.port) as peer:
        request, _ = build_request("localhost", method=method)
        peer.sock.sendall(request)
        fields = assert_refused(peer, 405)
        assert fields["allow"] == "GET"


def test_handshake_100kb_of_headers_refused_before_the_end(
    server: wssync.ThreadingServer,
) -> None:
    # 100 KB of header lines, each of a legal length: the head outgrows the
    # limit. The server must answer before the client sent it all: it
    # doesn't buffer the whole thing first.
    request, _ = build_request("localhost", headers=[("X-Padding", "p" * 4000)] * 25)
    assert len(request) > 100_000
    with raw_connection(server.port) as peer:
        peer.sock.sendall(request[:70_000])
        assert_refused(peer, {400, 431})
        with contextlib.suppress(OSError):  # the server may have reset it
            peer.sock.sendall(request[70_000:])
    assert_serves(server.port)


def test_handshake_100kb_header_line_refused_before_the_end(
    server: wssync.ThreadingServer,
) -> None:
    with raw_connection(server.port) as peer:
        peer.sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        peer.sock.sendall(b"b" * 20_000)  # of 100 KB to come
        assert_refused(peer, {400, 431})
    assert_serves(server.port)


def test_handshake_100kb_request_line_refused_before_the_end(
    server: wssync.ThreadingServer,
) -> None:
    with raw_connection(server.port) as peer:
        peer.sock.sendall(b"GET /" + b"a" * 20_000)  # of 100 KB to come
        assert_refused(peer, {400, 414, 431})
    assert_serves(server.port)


@pytest.mark.parametrize(
    "garbage",
    [
        # The start of a TLS ClientHello, sent to a plain ws:// port.
        bytes.fromhex("16030100c4010000c00303") + bytes(32),
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
    ],
    ids=["tls", "ssh", "binary", "no-target", "extra-words", "blank", "bad-field"],
)
def test_handshake_non_http_bytes_400(
    server: wssync.ThreadingServer, garbage: bytes
) -> None:
    with raw_connection(server.port) as peer:
        peer.sock.sendall(garbage)
        if garbage == b"\r\n\r\n\r\n":
            # Empty lines before a request may be ignored (RFC 7230 §3.5):
            # the server may keep waiting, so end the request here.
            peer.sock.sendall(b"x\r\n\r\n")
        assert_refused(peer, 400)
    assert_serves(server.port)


def test_handshake_plain_http_request_without_upgrade_gets_an_error(
    server: wssync.ThreadingServer,
) -> None:
    with raw_connection(server.port) as peer:
        peer.sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, _ = peer.read_response()
        assert status in (400, 426)
        peer.expect_eof()


def test_slowloris_dropped_at_open_timeout_while_others_are_served() -> None:
    open_timeout = 0.5
    with running_server(echo, open_timeout=open_timeout) as server:
        request, _ = build_request(f"127.0.0.1:{server.port}")

        def stall() -> float:
            """Send half a request, then nothing; return when dropped."""
            start = time.monotonic()
            with raw_connection(server.port) as peer:
                peer.sock.sendall(request[:40])
                peer.expect_eof(timeout=open_timeout + 5)
            return time.monotonic() - start

        def trickle() -> float:
            """Send one byte every 50 ms (the attacker's pace); return when dropped."""
            start = time.monotonic()
            with (
                raw_connection(server.port) as peer,
                selectors.DefaultSelector() as sel,
            ):
                sel.register(peer.sock, selectors.EVENT_READ)
                for byte in request[:-1]:
                    try:
                        peer.sock.send(bytes([byte]))
                    except OSError:
                        break
                    if sel.select(0.05):
                        with contextlib.suppress(OSError):
                            assert peer.sock.recv(100) == b""
                        break
                    assert time.monotonic() - start < open_timeout + 5
            return time.monotonic() - start

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            slow = [pool.submit(stall) for _ in range(3)]
            slow += [pool.submit(trickle) for _ in range(3)]
            # Meanwhile, a well-behaved client is served at once.
            start = time.monotonic()
            for _ in range(3):
                assert_serves(server.port)
            served = time.monotonic() - start
            assert served < open_timeout, "served only after the slow clients"
            dropped = [future.result(timeout=open_timeout + 10) for future in slow]
        for elapsed in dropped:
            assert open_timeout - 0.1 <= elapsed <= open_timeout + MARGIN, dropped


def test_max_connections_503() -> None:
    ended: queue.Queue[None] = queue.Queue()

    def handler(ws: wssync.ServerConnection) -> None:
        echo(ws)
        ended.put(None)

    with running_server(handler, max_connections=2) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        first = wssync.connect(uri)
        second = wssync.connect(uri)
        try:
            with pytest.raises(wssync.InvalidStatus) as info:
                wssync.connect(uri)
            assert info.value.response.status_code == 503
            first.close()
            ended.get(timeout=5)
            with wssync.connect(uri) as third:  # room again
                third.send("in")
                assert third.recv(timeout=5) == "in"
        finally:
            first.close()
            second.close()


def test_max_connections_holds_under_concurrent_handshakes() -> None:
    # Handshakes racing for the last places: never more than the limit.
    release = threading.Event()

    def handler(ws: wssync.ServerConnection) -> None:
        release.wait(10)

    with running_server(handler, max_connections=3) as server:
        uri = f"ws://127.0.0.1:{server.port}/"

        def attempt() -> object:
            try:
                return wssync.connect(uri, close_timeout=1)
            except wssync.InvalidStatus as exc:
                return exc.response.status_code

        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            outcomes = list(pool.map(lambda _: attempt(), range(10)))
        opened = [o for o in outcomes if isinstance(o, wssync.ClientConnection)]
        try:
            assert len(opened) == 3
            assert sorted(o for o in outcomes if isinstance(o, int)) == [503] * 7
        finally:
            release.set()
            for ws in opened:
                ws.close()


def test_origins_403() -> None:
    with running_server(echo, origins=["https://good.example"]) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        for origin in ["https://evil.example", "https://good.example.evil", None]:
            with pytest.raises(wssync.InvalidStatus) as info:
                wssync.connect(uri, origin=origin)
            assert info.value.response.status_code == 403
        with wssync.connect(uri, origin="https://good.example") as ws:
            ws.send("ok")
            assert ws.recv(timeout=5) == "ok"


# ----------------------------------------------------- after the handshake


def expect_close(peer: RawPeer, code: int) -> None:
    """The server sends a close frame with ``code``, then closes the TCP connection."""
    _, close = peer.recv_until_close()
    assert close.close_code == code, close
    peer.expect_eof()


def assert_closed_with(recorder: Recorder, code: int) -> None:
    """The handler saw its connection fail with ``code``."""
    ending = recorder.ending()
    assert isinstance(ending, wssync.ConnectionClosedError), ending
    assert ending.sent is not None and ending.sent.code == code


PROTOCOL_VIOLATIONS = {
    "unmasked": [dict(opcode=TEXT, payload=b"hello", mask=False)],
    "rsv1-without-extension": [dict(opcode=TEXT, payload=b"hello", rsv=4)],
    "rsv2": [dict(opcode=BINARY, payload=b"hello", rsv=2)],
    "rsv3": [dict(opcode=BINARY, payload=b"hello", rsv=1)],
    "rsv-on-ping": [dict(opcode=PING, payload=b"", rsv=4)],
    **{
        f"opcode-{opcode:#x}": [dict(opcode=opcode, payload=b"?")]
        for opcode in (0x3, 0x7, 0xB, 0xF)
    },
    "fragmented-ping": [dict(opcode=PING, payload=b"a", fin=False)],
    "fragmented-close": [dict(opcode=CLOSE, payload=close_payload(1000), fin=False)],
    "ping-126-bytes": [dict(opcode=PING, payload=b"p" * 126)],
    "pong-200-bytes": [dict(opcode=PONG, payload=b"p" * 200)],
    "ping-long-length-encoding": [
        dict(opcode=PING, payload=b"p" * 200, length_bytes=8)
    ],
    "continuation-first": [dict(opcode=CONT, payload=b"orphan")],
    "text-inside-fragmented": [
        dict(opcode=TEXT, payload=b"start", fin=False),
        dict(opcode=TEXT, payload=b"again"),
    ],
    "close-1-byte": [dict(opcode=CLOSE, payload=b"\x03")],
    **{
        f"close-code-{code}": [dict(opcode=CLOSE, payload=close_payload(code))]
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)
    },
    "length-top-bit": [
        dict(opcode=BINARY, payload=b"", length=1 << 63, length_bytes=8)
    ],
}


@pytest.mark.parametrize(
    "frames", list(PROTOCOL_VIOLATIONS.values()), ids=list(PROTOCOL_VIOLATIONS)
)
def test_protocol_violation_closes_1002(
    server: wssync.ThreadingServer, recorder: Recorder, frames: list[dict[str, Any]]
) -> None:
    with RawPeer.connect(server.port) as peer:
        # A valid message first: the connection works until the violation.
        peer.send_frame(TEXT, b"ok")
        assert peer.recv_frame() == (True, 0, TEXT, b"ok", False)
        for frame in frames:
            peer.send_frame(**frame)
        expect_close(peer, 1002)
    assert_closed_with(recorder, 1002)
    assert_serves(server.port)


UTF8_VIOLATIONS = {
    "text": [dict(opcode=TEXT, payload=b"caf\xe9")],
    "surrogate": [dict(opcode=TEXT, payload="\ud800".encode("utf-8", "surrogatepass"))],
    "truncated": [dict(opcode=TEXT, payload=b"euro \xe2\x82")],
    "across-fragments": [
        dict(opcode=TEXT, payload=b"caf\xc3", fin=False),
        dict(opcode=CONT, payload=b"\x28"),
    ],
    "truncated-at-end-of-fragments": [
        dict(opcode=TEXT, payload=b"ok", fin=False),
        dict(opcode=CONT, payload=b"\xf0\x9f"),
    ],
    "close-reason": [dict(opcode=CLOSE, payload=close_payload(1000, b"\xff\xfe"))],
}


@pytest.mark.parametrize(
    "frames", list(UTF8_VIOLATIONS.values()), ids=list(UTF8_VIOLATIONS)
)
def test_invalid_utf8_closes_1007(
    server: wssync.ThreadingServer, recorder: Recorder, frames: list[dict[str, Any]]
) -> None:
    with RawPeer.connect(server.port) as peer:
        for frame in frames:
            peer.send_frame(**frame)
        expect_close(peer, 1007)
    assert_closed_with(recorder, 1007)


SIZE_VIOLATIONS = {
    "one-frame": [dict(opcode=BINARY, payload=b"x" * 1025)],
    "text-frame": [dict(opcode=TEXT, payload=b"x" * 1025)],
    "fragments": [
        dict(opcode=BINARY, payload=b"x" * 600, fin=False),
        dict(opcode=CONT, payload=b"x" * 425),
    ],
    "many-small-fragments": [dict(opcode=BINARY, payload=b"x" * 100, fin=False)]
    + [dict(opcode=CONT, payload=b"x" * 100, fin=False)] * 10,
    # Only the header of a 1 TiB frame: refused from the header alone,
    # without waiting for (or buffering) the payload.
    "announced-only": [dict(opcode=BINARY, payload=b"", length=1 << 40)],
}


@pytest.mark.parametrize(
    "frames", list(SIZE_VIOLATIONS.values()), ids=list(SIZE_VIOLATIONS)
)
def test_message_over_max_size_closes_1009(
    recorder: Recorder, frames: list[dict[str, Any]]
) -> None:
    with running_server(recorder, max_size=1024) as server:
        with RawPeer.connect(server.port) as peer:
            peer.send_frame(BINARY, b"x" * 1024)  # at the limit: fine
            assert peer.recv_frame().payload == b"x" * 1024
            for frame in frames:
                peer.send_frame(**frame)
            expect_close(peer, 1009)
        assert_closed_with(recorder, 1009)


def deflate_bomb(size: int, window_bits: int) -> bytes:
    """``size`` zero bytes, raw-deflated, without the final empty block's tail."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -window_bits)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(parts)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]  # RFC 7692 §7.2.1


def negotiated_window(extensions: str) -> int:
    """The client_max_window_bits the server accepted (15 if it didn't say)."""
    assert extensions.startswith("permessage-deflate"), extensions
    for param in extensions.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name == "client_max_window_bits" and value:
            # zlib can't produce an 8-bit window; 9 is what it uses instead.
            return max(9, int(value))
    return 15


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragments"])
def test_deflate_bomb_stopped_at_max_size_with_bounded_memory(
    recorder: Recorder, fragmented: bool
) -> None:
    max_size = 1 << 20
    with running_server(recorder, max_size=max_size) as server:
        offer = [("Sec-WebSocket-Extensions", "permessage-deflate")]
        with RawPeer.connect(server.port, headers=offer) as peer:
            window = negotiated_window(peer.extensions)
            # A compressed message works: the extension is in use.
            compressor = zlib.compressobj(9, zlib.DEFLATED, -window)
            small = compressor.compress(b"hello") + compressor.flush(zlib.Z_SYNC_FLUSH)
            peer.send_frame(TEXT, small[:-4], rsv=4)
            reply = peer.recv_frame()
            assert reply.opcode == TEXT
            bomb = deflate_bomb(32 << 20, window)  # 32 MiB of zeros
            assert len(bomb) < 64 << 10
            if fragmented:
                size = 1024  # about 1 MiB decompressed per frame
                frames = [bomb[i : i + size] for i in range(0, len(bomb), size)]
            else:
                frames = [bomb]
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                for index, payload in enumerate(frames):
                    last = index == len(frames) - 1
                    with contextlib.suppress(OSError):  # refused early
                        peer.send_frame(
                            BINARY if index == 0 else CONT,
                            payload,
                            fin=last,
                            rsv=4 if index == 0 else 0,
                        )
                expect_close(peer, 1009)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert_closed_with(recorder, 1009)
        # Decompressing stops at max_size: memory grows by a few MiB, not
        # by the 32 MiB the bomb inflates to.
        assert peak - before < 4 * max_size, f"{(peak - before) / 2**20:.1f} MiB"
        assert_serves(server.port)


def test_flood_without_reading_keeps_memory_bounded() -> None:
    # A peer sends as fast as it can to a handler that doesn't read (the
    # application is busy): the server buffers up to its limits, then stops
    # reading and lets TCP push back, instead of growing without bound.
    busy = queue.Queue[None]()
    released = queue.Queue[int]()

    def handler(ws: wssync.ServerConnection) -> None:
        busy.get(timeout=20)  # the application is busy until the test says
        count = 0
        with contextlib.suppress(wssync.ConnectionClosed):
            for _ in ws:
                count += 1
        released.put(count)

    max_size = 1 << 16
    with running_server(handler, max_size=max_size, max_queue=16) as server:
        with RawPeer.connect(server.port) as peer:
            message = b"m" * 1000
            wire = build_frame(BINARY, message, mask=True) * 64  # 64 KB per send
            peer.sock.setblocking(False)
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                sent = 0
                with selectors.DefaultSelector() as sel:
                    sel.register(peer.sock, selectors.EVENT_WRITE)
                    # Send until the server stops reading and the kernel's
                    # buffers are full: no progress for a while.
                    while sel.select(0.5):
                        try:
                            sent += peer.sock.send(wire)
                        except BlockingIOError:
                            continue
                        assert sent < 1 << 30, "the server never pushed back"
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            # Buffered: about max_queue messages or max_size bytes (plus
            # what's being parsed), far less than what was sent; the rest
            # waits in the kernel's buffers.
            assert sent > 16 * max_size
            assert peak - before < 4 << 20, f"{(peak - before) / 2**20:.1f} MiB"
            peer.sock.setblocking(True)
            peer.close()
        busy.put(None)
        assert released.get(timeout=10) > 0


# ---------------------------------------------------------------- client side


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    with RawServer() as server:
        yield server


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        yield pool


def test_client_non_101_raises_invalid_status_with_response(
    raw_server: RawServer, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    def answer() -> None:
        peer = raw_server.accept()
        peer.read_request()
        peer.sock.sendall(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
            b"X-Reason: test\r\nContent-Length: 10\r\n\r\nGo away.\r\n"
        )

    done = pool.submit(answer)
    with pytest.raises(wssync.InvalidStatus) as info:
        wssync.connect(raw_server.uri, open_timeout=5)
    done.result(timeout=5)
    response = info.value.response
    assert response.status_code == 403
    assert response.headers["X-Reason"] == "test"
    assert response.body == b"Go away.\r\n"


@pytest.mark.parametrize(
    "accept",
    ["wrong", "dGhlIHNhbXBsZSBub25jZQ==", None],
    ids=["garbage", "other-key", "missing"],
)
def test_client_wrong_accept_raises_invalid_handshake(
    raw_server: RawServer,
    pool: concurrent.futures.ThreadPoolExecutor,
    accept: str | None,
) -> None:
    def answer() -> None:
        peer = raw_server.accept()
        peer.read_request()
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
        ]
        if accept is not None:
            lines.append(f"Sec-WebSocket-Accept: {accept}")
        peer.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    done = pool.submit(answer)
    with pytest.raises(wssync.InvalidHandshake) as info:
        wssync.connect(raw_server.uri, open_timeout=5)
    done.result(timeout=5)
    assert not isinstance(info.value, wssync.InvalidStatus)


def test_client_refused_port_raises_connection_refused_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now.
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        wssync.connect(f"ws://127.0.0.1:{port}/", open_timeout=10)
    assert time.monotonic() - start < 1


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost/",
        "localhost:8765",
        "ws://",
        "ws:///path",
        "ws://localhost:99999/",
        "ws://localhost:port/",
        "ws://localhost/#fragment",
        "ws://[::1/",
        "wss://exa mple.com/",
        "",
    ],
)
def test_client_bad_uri_raises_invalid_uri(uri: str) -> None:
    with pytest.raises(wssync.InvalidURI):
        wssync.connect(uri, open_timeout=1)


def test_client_untrusted_certificate_raises_verification_error() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    with running_server(echo, ssl=server_context) as server:
        uri = f"wss://localhost:{server.port}/"
        # The default context trusts the system's CAs, not this test CA.
        with pytest.raises(ssl.SSLCertVerificationError):
            wssync.connect(uri, open_timeout=5)
        # The same server, trusted: the failure was the certificate alone.
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        with wssync.connect(uri, ssl=client_context, open_timeout=5) as ws:
            ws.send("secure")
            assert ws.recv(timeout=5) == "secure"


def test_client_chunked_error_response_memory_bounded(
    raw_server: RawServer, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    # A hostile server refuses the handshake with a chunked body of 1-byte
    # chunks, each with 8 KB of chunk extensions: the body is tiny, the
    # bytes are not. The client must give up once it has read more than its
    # limits allow, not buffer until open_timeout.
    cap = 24 << 20  # the server stops here, so a failing run stays bounded
    chunk = b"1;" + b"e" * 8000 + b"\r\nx\r\n"

    def answer() -> int:
        peer = raw_server.accept()
        peer.read_request()
        sent = 0
        with contextlib.suppress(OSError):
            peer.sock.sendall(
                b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            while sent < cap:
                peer.sock.sendall(chunk * 64)
                sent += len(chunk) * 64
        return sent

    done = pool.submit(answer)
    with pytest.raises(wssync.InvalidHandshake):
        wssync.connect(raw_server.uri, open_timeout=1.5)
    raw_server.close()  # unblock the sender if it's still going
    assert done.result(timeout=10) < 16 << 20


@pytest.mark.parametrize("reads_request", [False, True], ids=["backlog", "accepted"])
def test_client_server_never_answers_times_out_at_open_timeout(
    raw_server: RawServer, reads_request: bool
) -> None:
    # The kernel completes the TCP handshake for the listening socket; when
    # asked, the test also accepts and reads the request, but never answers.
    open_timeout = 0.5
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        if reads_request:
            reader = pool.submit(lambda: raw_server.accept().read_request())
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            wssync.connect(raw_server.uri, open_timeout=open_timeout)
        elapsed = time.monotonic() - start
        if reads_request:
            reader.result(timeout=5)
    assert open_timeout - 0.05 <= elapsed <= open_timeout + MARGIN


def test_client_rejects_protocol_violation_from_server_1002(
    raw_server: RawServer, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    # The client side of "after the handshake": a masked frame from a server.
    def misbehave() -> None:
        peer, _ = raw_server.accept_handshake()
        peer.send_frame(TEXT, b"masked", mask=True)
        _, close = peer.recv_until_close()
        assert close.close_code == 1002
        peer.close()  # RFC 6455 §7.1.1: the server closes the TCP connection

    done = pool.submit(misbehave)
    ws = wssync.connect(raw_server.uri, open_timeout=5, compression=None)
    try:
        with pytest.raises(wssync.ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.sent is not None and info.value.sent.code == 1002
    finally:
        ws.close()
    done.result(timeout=5)


def test_client_deflate_bomb_from_server_stopped_at_max_size(
    raw_server: RawServer, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    bomb = deflate_bomb(32 << 20, 15)

    def misbehave() -> None:
        peer, fields = raw_server.accept_handshake(
            headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]
        )
        assert "permessage-deflate" in fields["sec-websocket-extensions"]
        assert peer.recv_frame().opcode == TEXT  # the client is measuring
        with contextlib.suppress(OSError):
            peer.send_frame(BINARY, bomb, rsv=4)
        _, close = peer.recv_until_close()
        assert close.close_code == 1009
        peer.close()  # RFC 6455 §7.1.1: the server closes the TCP connection

    done = pool.submit(misbehave)
    ws = wssync.connect(raw_server.uri, open_timeout=5, max_size=1 << 20)
    try:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            ws.send("go")
            with pytest.raises(wssync.ConnectionClosedError) as info:
                ws.recv(timeout=10)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert info.value.sent is not None and info.value.sent.code == 1009
        assert peak - before < 4 << 20, f"{(peak - before) / 2**20:.1f} MiB"
    finally:
        ws.close()
    done.result(timeout=5)


def test_server_logs_refused_handshakes_without_tracebacks(
    server: wssync.ThreadingServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A hostile client is no server error: nothing above INFO, no traceback.
    with caplog.at_level(logging.DEBUG, logger="wssync"):
        for data in [b"\x16\x03\x01garbage", b"POST / HTTP/1.1\r\n\r\n"]:
            with raw_connection(server.port) as peer:
                peer.sock.sendall(data)
                peer.read_response()
                peer.expect_eof()
    assert all(record.levelno <= logging.INFO for record in caplog.records)
    assert not any(record.exc_info for record in caplog.records)
