"""wssync.wsgi: WebSocket endpoints in a plain WSGI application, on real servers.

The application of ``wsgi_apps/plain_app.py`` runs under werkzeug's threaded
development server, wsgiref's (which Django's runserver extends) and gunicorn's
``gthread`` and ``sync`` workers, each a subprocess on 127.0.0.1. The unit
tests at the end cover what needs no server.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from wsgi_servers import (
    ServerProcess,
    assert_clean_log,
    check_handler_failure,
    check_not_websocket,
    check_plain_route,
    check_server_closes,
    check_wire_after_close,
    concurrent_echo,
    echo_with_websockets,
    echo_with_wssync,
)

import wssync
from wssync.sansio.handshake import ServerHandshake
from wssync.wsgi import (
    HandshakeRejected,
    UnsupportedServer,
    accept,
    release,
    websocket_app,
)

SERVERS = ["werkzeug", "wsgiref", "gunicorn-gthread", "gunicorn-sync"]


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    process = ServerProcess(request.param, "plain_app:app")
    yield process
    process.stop()


def test_echo_wssync(server: ServerProcess) -> None:
    echo_with_wssync(server.url("/echo"))


def test_echo_websockets(server: ServerProcess) -> None:
    echo_with_websockets(server.url("/echo"))


def test_subprotocol_and_path(server: ServerProcess) -> None:
    with wssync.connect(server.url("/info?x=1"), subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.recv(timeout=10) == "/info?x=1 chat"


def test_concurrent_connections(server: ServerProcess) -> None:
    if server.kind == "gunicorn-sync":
        pytest.skip("a sync worker serves one connection at a time")
    concurrent_echo(server.url("/echo"))


def test_plain_route(server: ServerProcess) -> None:
    check_plain_route(server.url("/plain", "http"))


def test_not_websocket(server: ServerProcess) -> None:
    check_not_websocket(server.url("/echo", "http"))


def test_handler_failure(server: ServerProcess) -> None:
    check_handler_failure(server.url("/fail"), server.url("/echo"))


def test_handler_reading_after_close(server: ServerProcess) -> None:
    """ConnectionClosedOK out of a handler is no error (test_log_is_clean)."""
    with wssync.connect(server.url("/recv-twice")) as ws:
        ws.send("once")
        assert ws.recv(timeout=10) == "once"
    assert ws.close_code == 1000


def test_wire_after_client_close(server: ServerProcess) -> None:
    check_wire_after_close(server.port, "/echo")


def test_wire_after_server_close(server: ServerProcess) -> None:
    message = b"/info None"
    check_server_closes(server.port, "/info", b"\x81" + bytes([len(message)]) + message)


def test_plain_route_after_websockets(server: ServerProcess) -> None:
    check_plain_route(server.url("/plain", "http"))


def test_log_is_clean(server: ServerProcess) -> None:
    """Runs last for each server: stops it and reads everything it printed."""
    assert_clean_log(server.stop())


# ------------------------------------------------------------ no server


def environ(**extra: Any) -> dict[str, Any]:
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/chat",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "waitress",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "Upgrade",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "wsgi.input": io.BytesIO(),
    }
    base.update(extra)
    return base


def test_unsupported_server_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedServer) as info:
        accept(environ())
    message = str(info.value)
    assert message.startswith("waitress cannot hand its connection over")
    for name in ("werkzeug", "gunicorn", "runserver"):
        assert name in message
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value, wssync.WebSocketException)


def test_rejection_is_a_wsgi_app() -> None:
    rejection = HandshakeRejected(ServerHandshake().reject(426, "nope\n"))
    started: list[Any] = []
    body = rejection(
        environ(), lambda status, headers: started.append((status, headers))
    )
    assert started[0][0] == "426 Upgrade Required"
    names = [name.lower() for name, _ in started[0][1]]
    assert "connection" not in names
    assert "upgrade" in names
    assert b"".join(body) == b"nope\n"
    assert str(rejection) == "426: nope"
    # wsgiref asserts that applications send no hop-by-hop header.
    started.clear()
    rejection(
        environ(SERVER_SOFTWARE="WSGIServer/0.2"),
        lambda status, headers: started.append((status, headers)),
    )
    assert "upgrade" not in [name.lower() for name, _ in started[0][1]]


def test_release_without_accept() -> None:
    with pytest.raises(RuntimeError, match="accept"):
        release(environ(), lambda *args: None)


def test_websocket_app_under_unsupported_server() -> None:
    """The error reaches the WSGI server, which logs it and answers 500."""
    app = websocket_app(lambda ws: None)
    with pytest.raises(UnsupportedServer):
        app(environ(), lambda status, headers: None)
