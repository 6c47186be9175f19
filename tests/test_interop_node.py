"""Interoperability with Node.js's ws package, in both roles.

The node side is a subprocess running ``tests/interop/node/echo_server.js`` or
``client.js``: it takes its options as JSON on the command line, prints one JSON
event per line on stdout and, for the client, reads one JSON command per line
on stdin; it exits when its stdin closes. Install the node package first::

    npm ci --prefix tests/interop/node

Every test runs with permessage-deflate on and off (ws's ``perMessageDeflate``
and wssync's ``compression``, set alike on both sides).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pathlib
import queue
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from samples import BIG_PAYLOADS, BINARY_FRAGMENTS, TEXT_FRAGMENTS, TEXTS

import wssync

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

NODE_DIR = pathlib.Path(__file__).parent / "interop" / "node"
NODE = shutil.which("node")
if NODE is None:
    pytest.skip("node isn't installed", allow_module_level=True)
if not (NODE_DIR / "node_modules" / "ws").is_dir():
    pytest.skip(
        "the ws package isn't installed: run `npm ci --prefix tests/interop/node`",
        allow_module_level=True,
    )

MAX_SIZE = 8 * 2**20
# Bound on every wait for the peer, well under the test timeout.
WAIT = 10


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def as_command(data: str | bytes) -> dict[str, str]:
    """Describe a payload for the node scripts: {"text": ...} or {"b64": ...}."""
    if isinstance(data, str):
        return {"text": data}
    return {"b64": base64.b64encode(data).decode()}


def received_fragments(ws: wssync.Connection) -> list[Any]:
    """Return the fragments of the next message, without empty ones."""
    return [fragment for fragment in ws.recv_streaming() if fragment]


class NodeProcess:
    """A node script in a subprocess, with its stdout read as JSON events."""

    def __init__(self, script: str, config: dict[str, Any]) -> None:
        assert NODE is not None
        self.process = subprocess.Popen(
            [NODE, str(NODE_DIR / script), json.dumps(config)],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr: list[bytes] = []
        self.readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def expect(self, kind: str) -> dict[str, Any]:
        """Return the next event, which must be of this kind."""
        try:
            event = self.events.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no {kind!r} event from node within {WAIT} s")
        if event is None:
            stderr = b"".join(self.stderr).decode(errors="replace")
            pytest.fail(f"node exited while a {kind!r} event was expected:\n{stderr}")
        assert event["event"] == kind, event
        return event

    def command(self, op: str, **arguments: Any) -> None:
        assert self.process.stdin is not None
        line = json.dumps({"op": op, **arguments}) + "\n"
        self.process.stdin.write(line.encode())
        self.process.stdin.flush()

    def stop(self) -> None:
        """Close stdin, which makes the script exit; kill it if it doesn't."""
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        try:
            self.process.wait(WAIT)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck script
            self.process.kill()
            self.process.wait(WAIT)
        for reader in self.readers:
            reader.join(WAIT)
        assert self.process.stdout is not None and self.process.stderr is not None
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture(params=["deflate", None], ids=["deflate", "uncompressed"])
def compression(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def node() -> Iterator[Callable[[str, dict[str, Any]], NodeProcess]]:
    """Start node scripts; stop them all at teardown."""
    processes: list[NodeProcess] = []

    def start(script: str, config: dict[str, Any]) -> NodeProcess:
        processes.append(NodeProcess(script, config))
        return processes[-1]

    yield start
    for process in processes:
        process.stop()


# ================================================ wssync client, node server


class NodeServer:
    def __init__(self, process: NodeProcess, secure: bool, compression: str | None):
        self.process = process
        self.compression = compression
        port = process.expect("listening")["port"]
        self.base = f"{'wss' if secure else 'ws'}://127.0.0.1:{port}"

    def connect(self, path: str, **options: Any) -> wssync.ClientConnection:
        options = {"compression": self.compression, "max_size": MAX_SIZE, **options}
        ws = wssync.connect(self.base + path, **options)
        event = self.process.expect("connection")
        assert event["path"] == path
        return ws

    def control(self, ws: wssync.ClientConnection, op: str, **arguments: Any) -> None:
        ws.send(json.dumps({"op": op, **arguments}))


@pytest.fixture
def node_server(
    node: Callable[[str, dict[str, Any]], NodeProcess], compression: str | None
) -> Callable[..., NodeServer]:
    def start(subprotocols: list[str] | None = None, tls: Any = None) -> NodeServer:
        config: dict[str, Any] = {
            "perMessageDeflate": compression is not None,
            "subprotocols": subprotocols,
        }
        if tls is not None:
            config["tls"] = {"cert": str(tls.cert_pem), "key": str(tls.key_pem)}
        return NodeServer(node("echo_server.js", config), tls is not None, compression)

    return start


def test_node_server_handshake(node_server: Callable[..., NodeServer]) -> None:
    server = node_server()
    with wssync.connect(f"{server.base}/echo", compression=server.compression) as ws:
        event = server.process.expect("connection")
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        if server.compression is None:
            assert event["offer"] is None
            assert extensions is None
        else:
            # ws saw wssync's offer and accepted permessage-deflate.
            assert event["offer"] == ws.request.headers["Sec-WebSocket-Extensions"]
            assert extensions is not None
            assert extensions.split(";")[0].strip() == "permessage-deflate"
        assert ws.subprotocol is None
        ws.send("after the handshake")
        assert ws.recv(timeout=WAIT) == "after the handshake"


def test_node_server_utf8_text(node_server: Callable[..., NodeServer]) -> None:
    server = node_server()
    with server.connect("/echo") as ws:
        for text in TEXTS:
            ws.send(text)
            echoed = ws.recv(timeout=WAIT)
            assert isinstance(echoed, str)
            assert echoed == text


@pytest.mark.parametrize("payload", BIG_PAYLOADS, ids=["random", "repetitive"])
def test_node_server_big_binary(
    node_server: Callable[..., NodeServer], payload: bytes
) -> None:
    server = node_server()
    with server.connect("/echo") as ws:
        ws.send(payload)
        echoed = ws.recv(timeout=WAIT)
        assert isinstance(echoed, bytes)
        assert len(echoed) == len(payload)
        assert sha256(echoed) == sha256(payload)


@pytest.mark.parametrize(
    "fragments", [TEXT_FRAGMENTS, BINARY_FRAGMENTS], ids=["text", "binary"]
)
def test_node_server_fragments(
    node_server: Callable[..., NodeServer], fragments: list[Any]
) -> None:
    server = node_server()
    joined = fragments[0][:0].join(fragments)
    with server.connect("/echo") as ws:
        # wssync → ws: ws reassembles the message and echoes it whole.
        ws.send(iter(fragments))
        assert ws.recv(timeout=WAIT) == joined
    assert server.process.expect("close")["code"] == 1000
    with server.connect("/control") as ws:
        # ws → wssync: ws sends the fragments with fin: false.
        server.control(
            ws, "fragments", chunks=[as_command(chunk) for chunk in fragments]
        )
        assert received_fragments(ws) == fragments
        server.control(
            ws, "fragments", chunks=[as_command(chunk) for chunk in fragments]
        )
        assert ws.recv(timeout=WAIT) == joined


def test_node_server_subprotocol(node_server: Callable[..., NodeServer]) -> None:
    server = node_server(subprotocols=["chat.v1", "chat.v2"])
    with wssync.connect(
        f"{server.base}/echo",
        compression=server.compression,
        subprotocols=["chat.v3", "chat.v2"],
    ) as ws:
        assert server.process.expect("connection")["protocol"] == "chat.v2"
        assert ws.subprotocol == "chat.v2"
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "chat.v2"
    assert server.process.expect("close")["code"] == 1000
    with wssync.connect(f"{server.base}/echo", compression=server.compression) as ws:
        assert server.process.expect("connection")["protocol"] == ""
        assert ws.subprotocol is None


def test_node_server_ping_pong(node_server: Callable[..., NodeServer]) -> None:
    server = node_server()
    with server.connect("/control") as ws:
        assert ws.ping(b"client ping").wait(WAIT)
        assert ws.ping("text ping ☃").wait(WAIT)
        # ws pings; wssync answers while no thread is in recv().
        payload = b"server ping \x00\xff"
        server.control(ws, "ping", b64=base64.b64encode(payload).decode())
        pong = json.loads(ws.recv(timeout=WAIT))
        assert pong == {"event": "pong", "b64": base64.b64encode(payload).decode()}


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (1001, "going away"), (1011, "oops"), (4002, "custom ☃ reason")],
)
def test_node_server_closes(
    node_server: Callable[..., NodeServer], code: int, reason: str
) -> None:
    server = node_server()
    with server.connect("/control") as ws:
        server.control(ws, "close", code=code, reason=reason)
        expected = (
            wssync.ConnectionClosedOK if code < 1002 else wssync.ConnectionClosedError
        )
        with pytest.raises(expected) as raised:
            ws.recv(timeout=WAIT)
        assert (raised.value.code, raised.value.reason) == (code, reason)
        assert (ws.close_code, ws.close_reason) == (code, reason)
    # ws got its close code echoed.
    assert server.process.expect("close")["code"] == code


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, ""), (1000, "done"), (4001, "bye ☃, 日本")]
)
def test_node_server_client_closes(
    node_server: Callable[..., NodeServer], code: int, reason: str
) -> None:
    server = node_server()
    with server.connect("/echo") as ws:
        ws.send("one message first")
        assert ws.recv(timeout=WAIT) == "one message first"
        ws.close(code, reason)
        assert ws.close_code == code
    event = server.process.expect("close")
    assert (event["code"], event["reason"]) == (code, reason)


def test_node_server_tls(
    node_server: Callable[..., NodeServer], tls_files: Any
) -> None:
    server = node_server(tls=tls_files)
    assert server.base.startswith("wss://")
    with server.connect("/echo", ssl=tls_files.client_context()) as ws:
        for message in ["over TLS 🔒", os.urandom(2 * 2**20)]:
            ws.send(message)
            assert ws.recv(timeout=WAIT) == message
        ws.send(TEXT_FRAGMENTS)
        assert ws.recv(timeout=WAIT) == "".join(TEXT_FRAGMENTS)
        assert ws.ping(b"secure ping").wait(WAIT)
    assert server.process.expect("close")["code"] == 1000


# ================================================ node client, wssync server


def handler(ws: wssync.ServerConnection, events: queue.Queue[Any]) -> None:
    """Serve one connection according to its path.

    ``/echo`` echoes every message fragment by fragment and reports the
    fragments; ``/ping`` pings the client and sends "pong" when the pong came
    back; ``/close/CODE/REASON`` closes with that code and reason. Events:
    ``("open", ws)``, ``("fragments", [...])`` and ``("closed", exception)``.
    """
    events.put(("open", ws))
    try:
        path = ws.request.path
        if path == "/echo":
            while True:
                fragments = list(ws.recv_streaming())
                events.put(("fragments", fragments))
                ws.send(fragments if len(fragments) > 1 else fragments[0])
        elif path == "/ping":
            pong = ws.ping(b"server ping")
            ws.send("pong" if pong.wait(WAIT) else "no pong")
        elif path.startswith("/close/"):
            _, _, code, reason = path.split("/", 3)
            ws.close(int(code), urllib.parse.unquote(reason))
        while True:
            ws.recv()
    except wssync.ConnectionClosed as exc:
        events.put(("closed", exc))


class NodeClient:
    def __init__(
        self, process: NodeProcess, events: queue.Queue[Any], server: Any
    ) -> None:
        self.process = process
        self.events = events
        self.server = server
        self.open = process.expect("open")
        self.server_ws: wssync.ServerConnection = self.server_event("open")

    def server_event(self, kind: str) -> Any:
        event = self.events.get(timeout=WAIT)
        assert event[0] == kind, event
        return event[1]

    def send(self, data: str | bytes, fin: bool = True) -> None:
        self.process.command("send", fin=fin, **as_command(data))

    def expect_message(self, data: str | bytes) -> None:
        event = self.process.expect("message")
        assert event["binary"] is isinstance(data, bytes)
        encoded = data if isinstance(data, bytes) else data.encode()
        assert (event["length"], event["sha256"]) == (len(encoded), sha256(encoded))
        if "text" in event:
            assert event["text"] == data


@pytest.fixture
def node_client(
    node: Callable[[str, dict[str, Any]], NodeProcess],
    wssync_server: Callable[..., wssync.ThreadingServer],
    compression: str | None,
) -> Callable[..., NodeClient]:
    def start(
        path: str,
        protocols: list[str] | None = None,
        tls: Any = None,
        **server_options: Any,
    ) -> NodeClient:
        events: queue.Queue[Any] = queue.Queue()
        server = wssync_server(
            lambda ws: handler(ws, events),
            compression=compression,
            max_size=MAX_SIZE,
            ssl=None if tls is None else tls.server_context(),
            **server_options,
        )
        config: dict[str, Any] = {
            "url": f"{'ws' if tls is None else 'wss'}://127.0.0.1:{server.port}{path}",
            "perMessageDeflate": compression is not None,
            "protocols": protocols or [],
        }
        if tls is not None:
            config["ca"] = str(tls.ca_pem)
        return NodeClient(node("client.js", config), events, server)

    return start


def test_node_client_handshake(
    node_client: Callable[..., NodeClient], compression: str | None
) -> None:
    client = node_client("/echo")
    extensions = client.server_ws.response.headers.get("Sec-WebSocket-Extensions")
    # ws saw the response the wssync server sent.
    assert client.open["extensions"] == extensions
    if compression is None:
        assert extensions is None
    else:
        assert extensions is not None
        assert extensions.split(";")[0].strip() == "permessage-deflate"
    assert client.open["protocol"] == ""
    assert client.server_ws.subprotocol is None


def test_node_client_utf8_text(node_client: Callable[..., NodeClient]) -> None:
    client = node_client("/echo")
    for text in TEXTS:
        client.send(text)
        client.expect_message(text)
        assert "".join(client.server_event("fragments")) == text


@pytest.mark.parametrize("payload", BIG_PAYLOADS, ids=["random", "repetitive"])
def test_node_client_big_binary(
    node_client: Callable[..., NodeClient], payload: bytes
) -> None:
    client = node_client("/echo")
    client.send(payload)
    client.expect_message(payload)
    assert sha256(b"".join(client.server_event("fragments"))) == sha256(payload)


@pytest.mark.parametrize(
    "fragments", [TEXT_FRAGMENTS, BINARY_FRAGMENTS], ids=["text", "binary"]
)
def test_node_client_fragments(
    node_client: Callable[..., NodeClient], fragments: list[Any]
) -> None:
    client = node_client("/echo")
    for index, fragment in enumerate(fragments):
        client.send(fragment, fin=index == len(fragments) - 1)
    # wssync received the fragments one by one, and echoed the same fragments.
    assert client.server_event("fragments") == fragments
    client.expect_message(fragments[0][:0].join(fragments))


def test_node_client_subprotocol(node_client: Callable[..., NodeClient]) -> None:
    client = node_client(
        "/echo",
        protocols=["chat.v3", "chat.v2"],
        subprotocols=["chat.v1", "chat.v2"],
    )
    assert client.open["protocol"] == "chat.v2"
    assert client.server_ws.subprotocol == "chat.v2"


def test_node_client_ping_pong(node_client: Callable[..., NodeClient]) -> None:
    client = node_client("/echo")
    payload = base64.b64encode(b"client ping \x00\xff").decode()
    client.process.command("ping", b64=payload)
    assert client.process.expect("pong")["b64"] == payload
    # The server side pings too (another connection, on /ping).
    pinged = node_client("/ping")
    pinged.expect_message("pong")


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (1001, "going away"), (1011, "oops"), (4002, "custom ☃ reason")],
)
def test_node_client_server_closes(
    node_client: Callable[..., NodeClient], code: int, reason: str
) -> None:
    client = node_client(f"/close/{code}/{urllib.parse.quote(reason)}")
    event = client.process.expect("close")
    assert (event["code"], event["reason"]) == (code, reason)
    # ws echoed the close code.
    assert client.server_event("closed").code == code
    assert client.server_ws.close_code == code


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, ""), (1000, "done"), (4001, "bye ☃, 日本")]
)
def test_node_client_closes(
    node_client: Callable[..., NodeClient], code: int, reason: str
) -> None:
    client = node_client("/echo")
    client.send("one message first")
    client.expect_message("one message first")
    assert client.server_event("fragments") == ["one message first"]
    client.process.command("close", code=code, reason=reason)
    closed = client.server_event("closed")
    assert isinstance(
        closed,
        wssync.ConnectionClosedOK if code == 1000 else wssync.ConnectionClosedError,
    )
    assert (closed.code, closed.reason) == (code, reason)
    assert client.process.expect("close")["code"] == code


def test_node_client_tls(
    node_client: Callable[..., NodeClient], tls_files: Any
) -> None:
    client = node_client("/echo", tls=tls_files)
    for message in ["over TLS 🔒", os.urandom(2 * 2**20)]:
        client.send(message)
        client.expect_message(message)
        assert message[:0].join(client.server_event("fragments")) == message
    client.process.command("close", code=1000, reason="")
    assert client.server_event("closed").code == 1000
    assert client.process.expect("close")["code"] == 1000
