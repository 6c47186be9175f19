"""A plain WSGI application with WebSocket endpoints, for tests/test_wsgi.py."""

from __future__ import annotations

from typing import Any, Callable

from wssync.wsgi import websocket_app


def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


def fail(ws: Any) -> None:
    ws.recv()
    raise RuntimeError("boom (expected by the test)")


def recv_twice(ws: Any) -> None:
    ws.send(ws.recv())
    ws.recv()  # the client closed: ConnectionClosedOK, which isn't an error


def info(ws: Any) -> None:
    ws.send(f"{ws.request.path} {ws.subprotocol}")


ROUTES = {
    "/echo": websocket_app(echo),
    "/fail": websocket_app(fail),
    "/recv-twice": websocket_app(recv_twice),
    "/info": websocket_app(info, subprotocols=["chat"]),
}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    route = ROUTES.get(environ.get("PATH_INFO", ""))
    if route is not None:
        return route(environ, start_response)
    body = b"plain HTTP still works\n"
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    return [body]
