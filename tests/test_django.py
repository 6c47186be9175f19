"""wssync.django: WebSocket views in a Django project, on real servers.

The minimal project of ``django_project/`` (settings, urls, views) runs under
``manage.py runserver --noreload`` and gunicorn's ``gthread`` (32 threads) and
``sync`` workers, each a subprocess on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("django")

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

SERVERS = ["runserver", "gunicorn-gthread", "gunicorn-sync"]


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    process = ServerProcess(request.param, "echoproject.wsgi")
    yield process
    process.stop()


def test_echo_wssync(server: ServerProcess) -> None:
    echo_with_wssync(server.url("/ws/echo/"))


def test_echo_websockets(server: ServerProcess) -> None:
    echo_with_websockets(server.url("/ws/echo/"))


def test_url_arguments_options_and_request(server: ServerProcess) -> None:
    url = server.url("/ws/rooms/kitchen/")
    with wssync.connect(url, subprotocols=["chat"]) as ws:
        assert ws.recv(timeout=10) == "kitchen chat /ws/rooms/kitchen/"


def test_concurrent_connections(server: ServerProcess) -> None:
    if server.kind == "gunicorn-sync":
        pytest.skip("a sync worker serves one connection at a time")
    concurrent_echo(server.url("/ws/echo/"))


def test_plain_route(server: ServerProcess) -> None:
    check_plain_route(server.url("/plain/", "http"))


def test_not_websocket(server: ServerProcess) -> None:
    check_not_websocket(server.url("/ws/echo/", "http"))


def test_handler_failure(server: ServerProcess) -> None:
    check_handler_failure(server.url("/ws/fail/"), server.url("/ws/echo/"))


def test_wire_after_client_close(server: ServerProcess) -> None:
    check_wire_after_close(server.port, "/ws/echo/")


def test_wire_after_server_close(server: ServerProcess) -> None:
    message = b"kitchen None /ws/rooms/kitchen/"
    expected = b"\x81" + bytes([len(message)]) + message
    check_server_closes(server.port, "/ws/rooms/kitchen/", expected)


def test_plain_route_after_websockets(server: ServerProcess) -> None:
    check_plain_route(server.url("/plain/", "http"))


def test_log_is_clean(server: ServerProcess) -> None:
    """Runs last for each server: stops it and reads everything it printed."""
    assert_clean_log(server.stop())
