"""A Flask application made by a factory, with Sock.init_app."""

from __future__ import annotations

from typing import Any

from flask import Flask

from wssync.flask import Sock

sock = Sock()


@sock.route("/echo")
def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


def create_app() -> Flask:
    app = Flask(__name__)
    sock.init_app(app)
    return app
