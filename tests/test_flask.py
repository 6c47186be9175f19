"""wssync.flask: WebSocket routes in a Flask application, on real servers.

The application of ``wsgi_apps/flask_app.py`` runs under werkzeug's threaded
development server (also behind its debugger, as ``flask run --debug`` serves
it) and gunicorn's ``gthread`` (32 threads) and ``sync`` workers, each a
subprocess on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("flask")

from wsgi_servers import (
    ServerProcess,
    assert_clean_log,
    check_handler_failure,
    check_not_websocket,
    check_plain_route,
    check_wire_after_close,
    concurrent_echo,
    echo_with_websockets,
    echo_with_wssync,
)

import wssync

SERVERS = ["werkzeug", "werkzeug-debug", "gunicorn-gthread", "gunicorn-sync"]


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    process = ServerProcess(request.param, "flask_app:app")
    yield process
    process.stop()


def test_echo_wssync(server: ServerProcess) -> None:
    echo_with_wssync(server.url("/echo"))


def test_echo_websockets(server: ServerProcess) -> None:
    echo_with_websockets(server.url("/echo"))


def test_blueprint_route(server: ServerProcess) -> None:
    with wssync.connect(server.url("/api/echo")) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "api: hi"


def test_url_variables_options_and_request_context(server: ServerProcess) -> None:
    with wssync.connect(server.url("/rooms/kitchen"), subprotocols=["chat"]) as ws:
        assert ws.recv(timeout=10) == "kitchen chat hello from the request context"


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


def test_wire_after_close(server: ServerProcess) -> None:
    check_wire_after_close(server.port, "/echo")


def test_plain_route_after_websockets(server: ServerProcess) -> None:
    check_plain_route(server.url("/plain", "http"))


def test_log_is_clean(server: ServerProcess) -> None:
    """Runs last for each server: stops it and reads everything it printed."""
    assert_clean_log(server.stop())


@pytest.mark.parametrize("kind", ["werkzeug", "gunicorn-gthread"])
def test_application_factory(kind: str) -> None:
    """Sock() then init_app(app), as in an application factory."""
    process = ServerProcess(kind, "factory_app:create_app()")
    try:
        echo_with_wssync(process.url("/echo"))
    finally:
        assert_clean_log(process.stop())
