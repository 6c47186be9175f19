"""A Flask application with WebSocket routes, for tests/test_flask.py."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, g

from wssync.flask import Sock

app = Flask(__name__)
sock = Sock(app)
api = Blueprint("api", __name__, url_prefix="/api")


@app.before_request
def before() -> None:
    g.greeting = "hello from the request context"


@sock.route("/echo")
def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


@sock.route("/fail")
def fail(ws: Any) -> None:
    ws.recv()
    raise RuntimeError("boom (expected by the test)")


@sock.route("/rooms/<name>", options={"subprotocols": ["chat"]})
def room(ws: Any, name: str) -> None:
    ws.send(f"{name} {ws.subprotocol} {g.greeting}")


@sock.route("/echo", bp=api)
def api_echo(ws: Any) -> None:
    for message in ws:
        ws.send(f"api: {message}")


@app.route("/plain")
def plain() -> str:
    return "plain HTTP still works\n"


app.register_blueprint(api)
