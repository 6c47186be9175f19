"""connect(), unix_connect() and reconnect() against wssync servers on loopback."""

from __future__ import annotations

import errno
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import wssync
import wssync.client as client_module

pytestmark = pytest.mark.timeout(30)

#: For the tests of a send standing for the wait for a connect in progress.
_linux_sends_tell_connecting = pytest.mark.skipif(
    sys.platform != "linux", reason="Linux says EAGAIN to a send while connecting"
)


def echo(ws: wssync.ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def request_headers(ws: wssync.ServerConnection) -> None:
    assert ws.request is not None
    for name, value in ws.request.headers.raw_items():
        ws.send(f"{name}: {value}")
    ws.send("end")


@pytest.fixture
def server_factory() -> Iterator[Any]:
    servers: list[wssync.ThreadingServer] = []

    def start(handler: Any = echo, **options: Any) -> wssync.ThreadingServer:
        server = wssync.serve(handler, "127.0.0.1", 0, **options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.shutdown()


def received_headers(ws: wssync.ClientConnection) -> dict[str, str]:
    headers = {}
    while (line := ws.recv(timeout=5)) != "end":
        assert isinstance(line, str)
        name, value = line.split(": ", 1)
        headers[name.lower()] = value
    return headers


def test_request_headers(server_factory: Any) -> None:
    server = server_factory(request_headers)
    with wssync.connect(
        f"ws://127.0.0.1:{server.port}/",
        origin="https://example.com",
        additional_headers={"X-Token": "abc"},
        subprotocols=["chat"],
    ) as ws:
        headers = received_headers(ws)
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["origin"] == "https://example.com"
    assert headers["x-token"] == "abc"
    assert headers["sec-websocket-protocol"] == "chat"
    assert re.fullmatch(r"wssync/\S+ Python/\d+\.\d+", headers["user-agent"])
    assert "permessage-deflate" in headers["sec-websocket-extensions"]


def test_additional_headers_as_pairs_and_headers(server_factory: Any) -> None:
    server = server_factory(request_headers)
    pairs = [("X-A", "1"), ("X-B", "2")]
    with wssync.connect(
        f"ws://127.0.0.1:{server.port}/", additional_headers=pairs
    ) as ws:
        headers = received_headers(ws)
    assert (headers["x-a"], headers["x-b"]) == ("1", "2")
    with wssync.connect(
        f"ws://127.0.0.1:{server.port}/",
        additional_headers=wssync.Headers({"X-C": "3"}),
    ) as ws:
        assert received_headers(ws)["x-c"] == "3"


def test_user_agent_header_and_compression_off(server_factory: Any) -> None:
    server = server_factory(request_headers)
    with wssync.connect(
        f"ws://127.0.0.1:{server.port}/", user_agent_header=None, compression=None
    ) as ws:
        headers = received_headers(ws)
    assert "user-agent" not in headers
    assert "sec-websocket-extensions" not in headers
    with wssync.connect(
        f"ws://127.0.0.1:{server.port}/", user_agent_header="bot/1"
    ) as ws:
        assert received_headers(ws)["user-agent"] == "bot/1"


def test_connect_over_given_socket(server_factory: Any) -> None:
    server = server_factory()
    sock = socket.create_connection(("127.0.0.1", server.port))
    with wssync.connect("ws://example.invalid/", sock=sock) as ws:
        ws.send("via sock")
        assert ws.recv(timeout=5) == "via sock"


def test_connect_to_an_ip_address_resolves_no_name(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = server_factory()

    def no_resolving(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an IP address needs no name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_resolving)
    with wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("direct")
        assert ws.recv(timeout=5) == "direct"
        assert ws.remote_address == ("127.0.0.1", server.port)


def test_open_timeout_bounds_the_connect_to_an_ip_address(
    unanswered_address: tuple[str, int],
) -> None:
    # api.md: the opening handshake, TCP connect included, takes at most
    # open_timeout, then TimeoutError.
    host, port = unanswered_address
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out connecting"):
        wssync.connect(f"ws://{host}:{port}/", open_timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 5


@_linux_sends_tell_connecting
def test_request_leaves_without_a_wait_for_the_connect(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over loopback the connect is done by the time the request is built:
    # its first send stands for the poll that waited for the connect.
    server = server_factory()

    def no_waiting(*args: Any) -> None:
        raise AssertionError("waited for a connect that was done")

    monkeypatch.setattr(client_module, "finish_connect", no_waiting)
    with wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("no wait")
        assert ws.recv(timeout=5) == "no wait"


@_linux_sends_tell_connecting
def test_request_waits_for_a_connect_in_progress(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A send that says EAGAIN (the connect isn't done yet: any real network)
    # waits for the connect, then sends the whole request.
    server = server_factory()
    waits: list[socket.socket] = []
    real_send = socket.socket.send
    real_finish = client_module.finish_connect

    def send(sock: socket.socket, data: Any, *args: Any) -> int:
        if not waits and bytes(data[:4]) == b"GET ":
            raise BlockingIOError(errno.EAGAIN, "in progress")
        return real_send(sock, data, *args)

    def finish_connect(sock: socket.socket, deadline: float | None) -> None:
        waits.append(sock)
        real_finish(sock, deadline)

    monkeypatch.setattr(socket.socket, "send", send)
    monkeypatch.setattr(client_module, "finish_connect", finish_connect)
    with wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("after the wait")
        assert ws.recv(timeout=5) == "after the wait"
    assert len(waits) == 1


def test_open_timeout_bounds_a_response_that_stops_halfway() -> None:
    # The socket is in its blocking mode before the response is read (see
    # connect()): a response that stops halfway must still end with
    # TimeoutError at open_timeout, not a recv() that never returns.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_half() -> None:
            peer, _ = listener.accept()
            with peer:
                peer.settimeout(5)
                peer.recv(4096)
                peer.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgr")
                peer.recv(4096)  # until the client gives up

        server = threading.Thread(target=answer_half)
        server.start()
        try:
            with pytest.raises(TimeoutError):
                # Without extensions to negotiate: the connection is made,
                # and the socket's mode set, before the response comes.
                wssync.connect(
                    f"ws://127.0.0.1:{port}/", compression=None, open_timeout=0.3
                )
        finally:
            server.join(10)
        assert not server.is_alive()


def test_nagle_is_off_on_both_ends(server_factory: Any) -> None:
    # Frames are written whole: Nagle's algorithm would only delay them.
    def report(ws: wssync.ServerConnection) -> None:
        ws.send(str(ws.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))

    server = server_factory(report)
    with wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert ws.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert ws.recv(timeout=5) != "0"


def test_connect_to_an_ipv6_address() -> None:
    try:
        server = wssync.serve(echo, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        server.start()
        with wssync.connect(f"ws://[::1]:{server.port}/") as ws:
            ws.send("over IPv6")
            assert ws.recv(timeout=5) == "over IPv6"
            assert ws.remote_address[:2] == ("::1", server.port)
    finally:
        server.shutdown()


def test_connect_to_a_name_resolves_it(server_factory: Any) -> None:
    server = server_factory()
    with wssync.connect(f"ws://localhost:{server.port}/") as ws:
        ws.send("by name")
        assert ws.recv(timeout=5) == "by name"


def test_connection_handshake_objects(server_factory: Any) -> None:
    server = server_factory()
    with wssync.connect(f"ws://127.0.0.1:{server.port}/a/b?c=d") as ws:
        assert ws.request is not None and ws.response is not None
        assert ws.request.path == "/a/b?c=d"
        assert ws.path == "/a/b?c=d"
        assert ws.response.status_code == 101
        assert ws.response.reason_phrase == "Switching Protocols"
        assert isinstance(ws, wssync.ClientConnection)
        assert ws.state is wssync.State.OPEN


def test_redirect_followed(server_factory: Any) -> None:
    target = server_factory()

    def redirect(connection: wssync.ServerConnection, request: wssync.Request) -> Any:
        response = connection.respond(302, "moved\n")
        response.headers["Location"] = f"ws://127.0.0.1:{target.port}/moved"
        return response

    origin = server_factory(process_request=redirect)
    with wssync.connect(f"ws://127.0.0.1:{origin.port}/") as ws:
        assert ws.path == "/moved"
        ws.send("after redirect")
        assert ws.recv(timeout=5) == "after redirect"


def test_relative_redirect_followed(server_factory: Any) -> None:
    def redirect(connection: wssync.ServerConnection, request: wssync.Request) -> Any:
        if request.path == "/old":
            response = connection.respond(301, "moved\n")
            response.headers["Location"] = "/new"
            return response
        return None

    server = server_factory(process_request=redirect)
    with wssync.connect(f"ws://127.0.0.1:{server.port}/old") as ws:
        assert ws.path == "/new"


def test_redirect_loop_gives_up(server_factory: Any) -> None:
    def loop(connection: wssync.ServerConnection, request: wssync.Request) -> Any:
        response = connection.respond(307, "again\n")
        response.headers["Location"] = "/again"
        return response

    server = server_factory(process_request=loop)
    with pytest.raises(wssync.InvalidHandshake, match="redirects"):
        wssync.connect(f"ws://127.0.0.1:{server.port}/")


def test_invalid_status_carries_response(server_factory: Any) -> None:
    def refuse(connection: wssync.ServerConnection, request: wssync.Request) -> Any:
        return connection.respond(404, "nothing here\n")

    server = server_factory(process_request=refuse)
    with pytest.raises(wssync.InvalidStatus) as info:
        wssync.connect(f"ws://127.0.0.1:{server.port}/")
    assert info.value.response.status_code == 404
    assert info.value.response.body == b"nothing here\n"


def test_reconnect_yields_new_connection_after_drop(server_factory: Any) -> None:
    count = 0
    lock = threading.Lock()

    def greet_then_drop(ws: wssync.ServerConnection) -> None:
        nonlocal count
        with lock:
            count += 1
            number = count
        ws.send(f"connection {number}")
        ws.close(1012, "restarting")

    server = server_factory(greet_then_drop)
    greetings = []
    for ws in wssync.reconnect(f"ws://127.0.0.1:{server.port}/"):
        try:
            for message in ws:
                greetings.append(message)
        except wssync.ConnectionClosedError:
            pass
        if len(greetings) == 3:
            break
    assert greetings == ["connection 1", "connection 2", "connection 3"]


def test_reconnect_raises_on_fatal_error(server_factory: Any) -> None:
    def forbid(connection: wssync.ServerConnection, request: wssync.Request) -> Any:
        return connection.respond(403, "no\n")

    server = server_factory(process_request=forbid)
    with pytest.raises(wssync.InvalidStatus):
        next(iter(wssync.reconnect(f"ws://127.0.0.1:{server.port}/")))
    with pytest.raises(wssync.InvalidURI):
        next(iter(wssync.reconnect("http://127.0.0.1/")))
