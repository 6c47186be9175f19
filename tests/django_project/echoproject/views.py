"""Views of the test project."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from wssync.django import websocket


@websocket
def echo(request: HttpRequest, ws: Any) -> None:
    for message in ws:
        ws.send(message)


@websocket
def fail(request: HttpRequest, ws: Any) -> None:
    ws.recv()
    raise RuntimeError("boom (expected by the test)")


@websocket(subprotocols=["chat"])
def room(request: HttpRequest, ws: Any, name: str) -> None:
    ws.send(f"{name} {ws.subprotocol} {request.path}")


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("plain HTTP still works\n", content_type="text/plain")
