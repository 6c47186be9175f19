"""ThreadingServer, serve() and unix_serve() with wssync's client on loopback."""

from __future__ import annotations

import contextvars
import logging
import os
import re
import socket
import ssl
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

import wssync
from wssync.sansio.headers import build_authorization_basic

pytestmark = pytest.mark.timeout(30)


def echo(ws: wssync.ServerConnection) -> None:
    for message in ws:
        ws.send(message)


@pytest.fixture
def server_factory() -> Iterator[Any]:
    """Start servers in the background; shut them all down at teardown."""
    servers: list[wssync.ThreadingServer] = []

    def start(handler: Any = echo, **options: Any) -> wssync.ThreadingServer:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        server = wssync.serve(handler, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.shutdown()


def uri(server: wssync.ThreadingServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def http_get(server: wssync.ThreadingServer, path: str, **headers: str) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# --------------------------------------------------------------------- basics


def test_echo(server_factory: Any) -> None:
    server = server_factory()
    with wssync.connect(uri(server)) as ws:
        ws.send("Hello world!")
        assert ws.recv(timeout=5) == "Hello world!"
        ws.send(b"\x00" * 100_000)
        assert ws.recv(timeout=5) == b"\x00" * 100_000


def test_port_and_addresses(server_factory: Any) -> None:
    server = server_factory()
    assert server.port > 0
    assert server.server_address == ("127.0.0.1", server.port)
    assert server.fileno() == server.socket.fileno()
    with wssync.connect(uri(server)) as ws:
        assert ws.remote_address == ("127.0.0.1", server.port)
        assert ws.local_address[0] == "127.0.0.1"
    assert "ThreadingServer" in repr(server)


def test_seed_style_handler_gets_path(server_factory: Any) -> None:
    def handler(websocket: wssync.ServerConnection, path: str) -> None:
        websocket.send(path)

    server = server_factory(handler)
    with wssync.connect(uri(server, "/some/path?x=1")) as ws:
        assert ws.recv(timeout=5) == "/some/path?x=1"
        assert ws.path == "/some/path?x=1"


def test_handler_connection_attributes(server_factory: Any) -> None:
    seen: dict[str, Any] = {}

    def handler(ws: wssync.ServerConnection) -> None:
        seen["path"] = ws.path
        seen["request"] = ws.request
        seen["response"] = ws.response
        seen["state"] = ws.state
        seen["in_connections"] = ws in ws.server.connections
        ws.send("ready")

    server = server_factory(handler)
    with wssync.connect(uri(server, "/attrs")) as ws:
        assert ws.recv(timeout=5) == "ready"
    assert seen["path"] == "/attrs"
    assert seen["request"].headers["Upgrade"] == "websocket"
    assert seen["response"].status_code == 101
    assert seen["state"] is wssync.State.OPEN
    assert seen["in_connections"]


def test_serve_forever_and_shutdown_from_another_thread() -> None:
    server = wssync.serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    with wssync.connect(uri(server)) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    server.shutdown()
    thread.join(5)
    assert not thread.is_alive()


def test_shutdown_closes_connections_1001(server_factory: Any) -> None:
    server = server_factory()
    ws = wssync.connect(uri(server))
    ws.send("x")
    assert ws.recv(timeout=5) == "x"
    server.shutdown()
    with pytest.raises(wssync.ConnectionClosedOK) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1001
    ws.close()


def test_shutdown_is_idempotent_and_context_manager() -> None:
    with wssync.serve(echo, "127.0.0.1", 0) as server:
        server.start()
        server.shutdown()
    server.shutdown()


def test_port_reused_after_shutdown() -> None:
    server = wssync.serve(echo, "127.0.0.1", 0).start()
    port = server.port
    with wssync.connect(f"ws://127.0.0.1:{port}") as ws:
        ws.send("a")
        assert ws.recv(timeout=5) == "a"
    server.shutdown()
    with wssync.serve(echo, "127.0.0.1", port) as again:
        again.start()
        with wssync.connect(f"ws://127.0.0.1:{port}") as ws:
            ws.send("b")
            assert ws.recv(timeout=5) == "b"


def test_connections_snapshot(server_factory: Any) -> None:
    server = server_factory()
    with wssync.connect(uri(server)) as a, wssync.connect(uri(server)) as b:
        for ws in (a, b):
            ws.send("x")
            ws.recv(timeout=5)
        snapshot = server.connections
        assert len(snapshot) == 2
        assert all(isinstance(c, wssync.ServerConnection) for c in snapshot)


def test_handler_exception_closes_1011_and_server_survives(
    server_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(ws: wssync.ServerConnection) -> None:
        if ws.recv() == "boom":
            raise RuntimeError("boom")
        ws.send("fine")

    server = server_factory(handler)
    with (
        caplog.at_level(logging.ERROR, logger="wssync.server"),
        wssync.connect(uri(server)) as ws,
    ):
        ws.send("boom")
        with pytest.raises(wssync.ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1011
    assert any("handler failed" in r.getMessage() for r in caplog.records)
    with wssync.connect(uri(server)) as ws:
        ws.send("ok")
        assert ws.recv(timeout=5) == "fine"


def test_unix_serve_and_connect() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "ws.sock")
        with wssync.unix_serve(echo, path) as server:
            server.start()
            with wssync.unix_connect(path) as ws:
                ws.send("over unix")
                assert ws.recv(timeout=5) == "over unix"


def test_serve_on_existing_socket(server_factory: Any) -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    server = server_factory(sock=sock, host=None, port=None)
    assert server.socket is sock
    with wssync.connect(uri(server)) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"


# ------------------------------------------------------------------ handshake


def test_process_request_serves_http(server_factory: Any) -> None:
    def process_request(
        connection: wssync.ServerConnection, request: wssync.Request
    ) -> Any:
        if request.path == "/healthz":
            return connection.respond(200, "OK\n")
        if request.path == "/page":
            response = connection.respond(200, "<h1>hi</h1>")
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "text/html; charset=utf-8"
            return response
        return None

    server = server_factory(process_request=process_request)
    status, _, body = http_get(server, "/healthz")
    assert (status, body) == (200, b"OK\n")
    status, headers, body = http_get(server, "/page")
    assert status == 200 and body == b"<h1>hi</h1>"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    with wssync.connect(uri(server, "/ws")) as ws:
        ws.send("still a websocket")
        assert ws.recv(timeout=5) == "still a websocket"


def test_plain_http_request_to_websocket_gets_error(server_factory: Any) -> None:
    server = server_factory()
    status, _, body = http_get(server, "/")
    assert status in (400, 426)
    assert body


def test_process_response_can_change_headers(server_factory: Any) -> None:
    def process_response(
        connection: wssync.ServerConnection,
        request: wssync.Request,
        response: wssync.Response,
    ) -> None:
        response.headers["X-Extra"] = "yes"

    server = server_factory(process_response=process_response)
    with wssync.connect(uri(server)) as ws:
        assert ws.response.headers["X-Extra"] == "yes"


def test_process_response_can_replace_response(server_factory: Any) -> None:
    def process_response(
        connection: wssync.ServerConnection,
        request: wssync.Request,
        response: wssync.Response,
    ) -> wssync.Response:
        return connection.respond(403, "no\n")

    server = server_factory(process_response=process_response)
    with pytest.raises(wssync.InvalidStatus) as info:
        wssync.connect(uri(server))
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"no\n"


def test_server_header(server_factory: Any) -> None:
    server = server_factory()
    with wssync.connect(uri(server)) as ws:
        assert re.fullmatch(
            r"wssync/\S+ Python/\d+\.\d+", ws.response.headers["Server"]
        )
    server = server_factory(server_header=None)
    with wssync.connect(uri(server)) as ws:
        assert "Server" not in ws.response.headers
    server = server_factory(server_header="custom")
    with wssync.connect(uri(server)) as ws:
        assert ws.response.headers["Server"] == "custom"


def test_origins(server_factory: Any) -> None:
    server = server_factory(
        origins=["https://good.example", re.compile(r"https://.*\.ok"), None]
    )
    for origin in ("https://good.example", "https://a.ok", None):
        with wssync.connect(uri(server), origin=origin) as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
    with pytest.raises(wssync.InvalidStatus) as info:
        wssync.connect(uri(server), origin="https://evil.example")
    assert info.value.response.status_code == 403


def test_origins_without_none_require_origin(server_factory: Any) -> None:
    server = server_factory(origins=["https://good.example"])
    with pytest.raises(wssync.InvalidStatus) as info:
        wssync.connect(uri(server))
    assert info.value.response.status_code == 403


def test_subprotocols(server_factory: Any) -> None:
    server = server_factory(subprotocols=["chat", "superchat"])
    with wssync.connect(uri(server), subprotocols=["superchat", "chat"]) as ws:
        assert ws.subprotocol in ("chat", "superchat")
    with wssync.connect(uri(server), subprotocols=["other"]) as ws:
        assert ws.subprotocol is None
    with wssync.connect(uri(server)) as ws:
        assert ws.subprotocol is None


def test_select_subprotocol(server_factory: Any) -> None:
    calls: list[Any] = []

    def select(connection: wssync.ServerConnection, subprotocols: Any) -> str | None:
        calls.append((connection, list(subprotocols)))
        return "second" if "second" in subprotocols else None

    server = server_factory(select_subprotocol=select)
    with wssync.connect(uri(server), subprotocols=["first", "second"]) as ws:
        assert ws.subprotocol == "second"
    assert isinstance(calls[0][0], wssync.ServerConnection)
    assert calls[0][1] == ["first", "second"]


def test_max_connections_503(server_factory: Any) -> None:
    server = server_factory(max_connections=1)
    with wssync.connect(uri(server)) as first:
        first.send("x")
        first.recv(timeout=5)
        with pytest.raises(wssync.InvalidStatus) as info:
            wssync.connect(uri(server))
        assert info.value.response.status_code == 503


def test_basic_auth_credentials(server_factory: Any) -> None:
    def whoami(ws: wssync.ServerConnection) -> None:
        ws.send(ws.username or "")

    server = server_factory(
        whoami,
        process_request=wssync.basic_auth(
            realm="test", credentials=("alice", "s3cret")
        ),
    )
    auth = build_authorization_basic("alice", "s3cret")
    with wssync.connect(uri(server), additional_headers={"Authorization": auth}) as ws:
        assert ws.recv(timeout=5) == "alice"
    with pytest.raises(wssync.InvalidStatus) as info:
        wssync.connect(uri(server))
    assert info.value.response.status_code == 401
    assert 'realm="test"' in info.value.response.headers["WWW-Authenticate"]
    bad = build_authorization_basic("alice", "wrong")
    with pytest.raises(wssync.InvalidStatus):
        wssync.connect(uri(server), additional_headers={"Authorization": bad})


def test_basic_auth_check_credentials(server_factory: Any) -> None:
    def check(username: str, password: str) -> bool:
        return password == username[::-1]

    server = server_factory(process_request=wssync.basic_auth(check_credentials=check))
    auth = build_authorization_basic("abc", "cba")
    with wssync.connect(uri(server), additional_headers={"Authorization": auth}) as ws:
        ws.send("in")
        assert ws.recv(timeout=5) == "in"
    with pytest.raises(TypeError):
        wssync.basic_auth()


def test_compression_negotiated_by_default(server_factory: Any) -> None:
    server = server_factory()
    with wssync.connect(uri(server)) as ws:
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        ws.send("a" * 10000)
        assert ws.recv(timeout=5) == "a" * 10000
    server = server_factory(compression=None)
    with wssync.connect(uri(server)) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
    with pytest.raises(ValueError):
        wssync.serve(echo, "127.0.0.1", 0, compression="brotli")


# ------------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certificates() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


def test_tls(server_factory: Any, certificates: Any) -> None:
    server_context, client_context = certificates
    server = server_factory(ssl=server_context)
    with wssync.connect(f"wss://localhost:{server.port}", ssl=client_context) as ws:
        ws.send("secure")
        assert ws.recv(timeout=5) == "secure"
        big = os.urandom(3 * 2**20 // 4)
        ws.send(big)
        assert ws.recv(timeout=5) == big
        assert ws.ping().wait(5)


def test_tls_reading_and_writing_at_once(
    server_factory: Any, certificates: Any
) -> None:
    # Both ways at once over TLS: on each side one thread writes while
    # another reads (the watcher, or the client's reading thread), which
    # take turns with the SSL object (OpenSSL forbids using one from two
    # threads at once). A race there needn't show up in one run; this
    # checks that taking turns loses nothing and never blocks.
    server_context, client_context = certificates
    count, size = 200, 32 * 1024
    done = threading.Event()
    received_by_server: list[bytes] = []

    def handler(ws: wssync.ServerConnection) -> None:
        # Write everything first: meanwhile the watcher reads for this
        # connection, so the messages from the client wait in its queue.
        for index in range(count):
            ws.send(bytes([index % 256]) * size)
        received_by_server.extend(ws.recv(timeout=10) for _ in range(count))
        done.set()

    server = server_factory(handler, ssl=server_context, max_queue=None)
    with wssync.connect(
        f"wss://localhost:{server.port}", ssl=client_context, max_queue=None
    ) as ws:
        received: list[bytes] = []
        reader = threading.Thread(
            target=lambda: received.extend(ws.recv(timeout=10) for _ in range(count))
        )
        reader.start()
        for index in range(count):
            ws.send(bytes([(index + 1) % 256]) * size)
        reader.join(20)
        assert done.wait(20)
    assert received == [bytes([i % 256]) * size for i in range(count)]
    assert received_by_server == [bytes([(i + 1) % 256]) * size for i in range(count)]


def test_tls_server_hostname(server_factory: Any, certificates: Any) -> None:
    server_context, client_context = certificates
    server = server_factory(ssl=server_context)
    with wssync.connect(
        f"wss://127.0.0.1:{server.port}",
        ssl=client_context,
        server_hostname="localhost",
    ) as ws:
        ws.send("sni")
        assert ws.recv(timeout=5) == "sni"


def test_tls_untrusted_certificate(server_factory: Any, certificates: Any) -> None:
    server_context, _ = certificates
    server = server_factory(ssl=server_context)
    with pytest.raises(ssl.SSLCertVerificationError):
        wssync.connect(f"wss://localhost:{server.port}")  # default trust store


def test_ssl_with_ws_uri_rejected() -> None:
    with pytest.raises(ValueError):
        wssync.connect("ws://127.0.0.1:1", ssl=ssl.create_default_context())


def test_date_header_is_formatted_once_per_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The handshake response's Date is cached for the current second: it
    # must still be the right date, and change with the second.
    import email.utils

    from wssync import server as server_module

    clock = [1_700_000_000.2]
    monkeypatch.setattr(server_module.time, "time", lambda: clock[0])
    monkeypatch.setattr(server_module, "_date_cache", (0, ""))
    first = server_module._http_date()
    assert first == email.utils.formatdate(1_700_000_000, usegmt=True)
    clock[0] = 1_700_000_000.9
    assert server_module._http_date() is first  # cached
    clock[0] = 1_700_000_001.0
    assert server_module._http_date() == email.utils.formatdate(
        1_700_000_001, usegmt=True
    )


# ------------------------------------------------------- handler threads reused


def test_idle_handler_thread_gets_the_next_job() -> None:
    from wssync.server import _Worker

    lock = threading.Lock()
    worker = _Worker()
    idle = [worker]
    a, b = socket.socketpair()
    with a, b:
        job = (a, ("127.0.0.1", 1), "wssync-handler-127.0.0.1:1")
        with lock:
            idle.remove(worker)
            worker.hand(job)
        assert worker.wait(5, lock, idle) == job
        # The next wait starts empty again: it times out, and the thread
        # takes itself off the idle list.
        idle.append(worker)
        assert worker.wait(0.01, lock, idle) is None
        assert idle == []


def test_idle_handler_thread_ends_at_shutdown() -> None:
    from wssync.server import _Worker

    lock = threading.Lock()
    worker = _Worker()
    idle = [worker]
    with lock:
        idle.clear()
        worker.hand(None)  # what shutdown() does
    assert worker.wait(5, lock, idle) is None


def run_connections(
    server_factory: Any, count: int
) -> tuple[wssync.ThreadingServer, list[threading.Thread]]:
    """Open and close ``count`` connections, one after the other.

    Returns:
        The server, and the thread that handled each connection.
    """
    threads: list[threading.Thread] = []

    def handler(ws: wssync.ServerConnection) -> None:
        threads.append(threading.current_thread())
        # Named after the connection it handles, even when reused.
        address = ws.remote_address
        assert threading.current_thread().name == (
            f"wssync-handler-{address[0]}:{address[1]}"
        )
        echo(ws)

    server = server_factory(handler)
    for _ in range(count):
        with wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
    return server, threads


_seen_by_handler: contextvars.ContextVar[str] = contextvars.ContextVar("seen")


def test_context_variables_start_afresh_for_each_connection(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Handler threads are reused; context variables must not leak from one
    # connection's handler to the next, as they wouldn't in a new thread.
    from wssync import server as server_module

    seen: list[tuple[threading.Thread, str]] = []
    idle = threading.Event()
    wait = server_module._Worker.wait

    def idle_then_wait(worker: Any, *args: Any) -> Any:
        idle.set()
        return wait(worker, *args)

    monkeypatch.setattr(server_module._Worker, "wait", idle_then_wait)

    def handler(ws: wssync.ServerConnection) -> None:
        seen.append((threading.current_thread(), _seen_by_handler.get("unset")))
        _seen_by_handler.set(ws.path)
        echo(ws)

    server = server_factory(handler)
    for path in ("/first", "/second"):
        with wssync.connect(f"ws://127.0.0.1:{server.port}{path}") as ws:
            ws.send("x")
            assert ws.recv(timeout=5) == "x"
        assert idle.wait(5)  # the handler's thread waits for the next one
    assert [value for _, value in seen] == ["unset", "unset"]
    assert seen[0][0] is seen[1][0]  # the same thread, reused


def test_idle_handler_threads_end_at_shutdown(server_factory: Any) -> None:
    server, threads = run_connections(server_factory, 3)
    server.shutdown()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


def test_idle_handler_threads_end_after_a_while(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wssync import server as server_module

    monkeypatch.setattr(server_module, "IDLE_THREAD_TIMEOUT", 0.01)
    server, threads = run_connections(server_factory, 3)
    for thread in threads:  # no shutdown: they end by themselves
        thread.join(5)
        assert not thread.is_alive()
    # And the server still serves, with a new thread.
    with wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("y")
        assert ws.recv(timeout=5) == "y"
    assert threads[-1] not in threads[:-1]
