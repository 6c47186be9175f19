"""WebSocket routes in Flask applications: :class:`Sock`.

::

    from flask import Flask
    from wssync.flask import Sock

    app = Flask(__name__)
    sock = Sock(app)

    @sock.route("/echo")
    def echo(ws):
        for message in ws:
            ws.send(message)

The handler runs in the WSGI server's worker thread, inside the request
context: ``flask.request``, ``flask.g``, ``flask.session`` and
``flask.current_app`` work as in a view. It gets the URL's variables as
keyword arguments, after ``ws``. See :mod:`wssync.wsgi` for the servers that
support this (``flask run`` and gunicorn do). Flask is an optional
dependency: ``pip install wssync[flask]``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Union

import flask

from .wsgi import (
    Environ,
    HandshakeRejected,
    StartResponse,
    _error_headers,
    _serve,
    release,
)

__all__ = ["Sock"]

Handler = Callable[..., Any]
Scaffold = Union[flask.Flask, flask.Blueprint]


class _Released(flask.Response):
    """What a WebSocket view returns once its connection ended.

    Flask's hooks (``after_request`` and the like) see an ordinary response;
    when the WSGI server runs it, :func:`wssync.wsgi.release` tells the
    server that the connection was taken over instead of writing it.
    """

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        return release(environ, start_response)


def _rejection_response(rejection: HandshakeRejected) -> flask.Response:
    """The handshake's error response, as a Flask response."""
    response = rejection.response
    return flask.Response(
        response.body,
        status=response.status_code,
        headers=_error_headers(response, flask.request.environ),
    )


def _add_rules(
    scaffold: Scaffold, rule: str, view: Callable[..., Any], kwargs: dict[str, Any]
) -> None:
    """Route WebSocket and plain HTTP requests for ``rule`` to ``view``.

    werkzeug's router tells WebSocket handshakes apart (by their Upgrade and
    Connection headers) and answers them with 400 unless the rule says
    ``websocket=True``; it answers plain requests to such a rule with 400
    too. A second, plain rule for the same view lets the handshake code
    answer those with its 426 that explains the problem. The WebSocket rule
    comes first, so that ``url_for(..., _external=True)`` gives a ``ws://``
    URL.
    """
    scaffold.add_url_rule(rule, view_func=view, websocket=True, **kwargs)
    scaffold.add_url_rule(rule, view_func=view, **kwargs)


class Sock:
    """WebSocket routes for a Flask application or several.

    Args:
        app: The application; or call :meth:`init_app` later, as with other
            Flask extensions (application factories).
        options: Handshake and connection options for every route, as for
            :func:`wssync.wsgi.accept` (``subprotocols``, ``max_size``,
            ``ping_interval``, ...).
    """

    def __init__(self, app: flask.Flask | None = None, **options: Any) -> None:
        self.options = options
        self._apps: list[flask.Flask] = []
        # Routes declared on the Sock itself, for apps initialised later.
        self._routes: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Add the routes declared with :meth:`route` (without ``bp``) to ``app``."""
        if app in self._apps:
            return
        self._apps.append(app)
        app.extensions["wssync"] = self
        for rule, view, kwargs in self._routes:
            _add_rules(app, rule, view, kwargs)

    def route(
        self, rule: str, bp: Scaffold | None = None, **kwargs: Any
    ) -> Callable[[Handler], Handler]:
        """Decorate a WebSocket handler to serve it at ``rule``.

        ::

            @sock.route("/rooms/<name>")
            def room(ws, name):
                ...

            @sock.route("/echo", bp=api)  # on a blueprint
            def echo(ws):
                ...

        The handler's connection is closed when it returns; if it raises,
        the error is logged and the close code is 1011. A request that
        isn't a WebSocket handshake gets a 426 (or 400) that says why.

        Args:
            rule: The URL rule, with variables as in ``app.route``.
            bp: A blueprint (or an application) to add the route to, instead
                of the Sock's applications.
            kwargs: Passed on to Flask's ``add_url_rule``, such as
                ``endpoint``; ``options`` replaces some of the Sock's
                WebSocket options for this route.

        Returns:
            A decorator that registers the handler and returns it unchanged.
        """
        options = {**self.options, **kwargs.pop("options", {})}

        def decorator(handler: Handler) -> Handler:
            @functools.wraps(handler)
            def view(**values: Any) -> flask.Response:
                rejection = _serve(
                    flask.request.environ,
                    lambda ws: handler(ws, **values),
                    options,
                )
                if rejection is not None:
                    return _rejection_response(rejection)
                return _Released()

            kwargs.setdefault("methods", ["GET"])
            if bp is not None:
                _add_rules(bp, rule, view, kwargs)
            else:
                self._routes.append((rule, view, kwargs))
                for app in self._apps:
                    _add_rules(app, rule, view, kwargs)
            return handler

        return decorator
