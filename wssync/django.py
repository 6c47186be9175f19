"""WebSocket views in Django projects: the :func:`websocket` decorator.

::

    # views.py
    from wssync.django import websocket

    @websocket
    def echo(request, ws):
        for message in ws:
            ws.send(message)

    # urls.py
    urlpatterns = [path("ws/echo/", views.echo)]

The view gets the request and the connection, then the URL's arguments; it
runs in the WSGI server's worker thread after the middleware saw the request
(sessions, authentication: ``request.user`` works). See :mod:`wssync.wsgi`
for the servers that support this (``manage.py runserver`` and gunicorn do).
Django is an optional dependency: ``pip install wssync[django]``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, overload

from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]

from .wsgi import _ConnectionTakenOver, _error_headers, _serve

__all__ = ["websocket"]

View = Callable[..., Any]
DjangoView = Callable[..., HttpResponse]


class _Released(HttpResponse):  # type: ignore[misc]
    """What a WebSocket view returns once its connection ended.

    The middleware sees an ordinary response. Django's WSGI handler passes
    its status, 101, to ``start_response``, which gunicorn's access log
    shows; then the server iterates over it, and the iteration tells the
    server that the connection was taken over (see
    :mod:`wssync.wsgi`). The server still calls ``close()``, which sends
    ``request_finished``: Django closes the request's database connections.
    """

    def __init__(self) -> None:
        super().__init__(status=101)

    def __iter__(self) -> Any:
        raise _ConnectionTakenOver()


@overload
def websocket(view: View) -> DjangoView: ...


@overload
def websocket(view: None = None, **options: Any) -> Callable[[View], DjangoView]: ...


def websocket(
    view: View | None = None, **options: Any
) -> DjangoView | Callable[[View], DjangoView]:
    """Turn ``view(request, ws, *args, **kwargs)`` into a Django view.

    Use it bare, or with handshake and connection options as for
    :func:`wssync.wsgi.accept`::

        @websocket
        def echo(request, ws): ...

        @websocket(subprotocols=["chat"], max_size=2**16)
        def chat(request, ws): ...

    The connection is closed when the view returns; if it raises, the error
    is logged and the close code is 1011. A request that isn't a WebSocket
    handshake gets a 426 (or 400) that says why.
    """

    def decorator(function: View) -> DjangoView:
        @functools.wraps(function)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            environ = request.environ
            rejection = _serve(
                environ, lambda ws: function(request, ws, *args, **kwargs), options
            )
            if rejection is None:
                return _Released()
            error = rejection.response
            response = HttpResponse(error.body, status=error.status_code)
            for name, value in _error_headers(error, environ):
                response.headers[name] = value
            return response

        return wrapper

    if view is not None:
        return decorator(view)
    return decorator
