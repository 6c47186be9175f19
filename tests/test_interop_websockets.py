"""Interoperability with the websockets library (its threading implementation).

Every test runs in both directions, a wssync client against a websockets
server and a websockets client against a wssync server, with compression on
(permessage-deflate) and off. The two libraries have the same synchronous API
for what is tested here, so one handler and one client procedure serve both.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from samples import BIG_PAYLOADS, BINARY_FRAGMENTS, TEXT_FRAGMENTS, TEXTS

import wssync

websockets_client = pytest.importorskip("websockets.sync.client")
websockets_server = pytest.importorskip("websockets.sync.server")
websockets_exceptions = pytest.importorskip("websockets.exceptions")

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

MAX_SIZE = 8 * 2**20
# Bound on every wait for the peer, well under the test timeout.
WAIT = 10

CLOSED = (wssync.ConnectionClosed, websockets_exceptions.ConnectionClosed)
CLOSED_OK = (wssync.ConnectionClosedOK, websockets_exceptions.ConnectionClosedOK)
CLOSED_ERROR = (
    wssync.ConnectionClosedError,
    websockets_exceptions.ConnectionClosedError,
)


# ------------------------------------------------------------ the server side


def handler(ws: Any, events: queue.Queue[Any]) -> None:
    """Serve one connection, for either library, according to its path.

    ``/echo`` echoes every message fragment by fragment, so fragmentation
    survives the round trip; ``/subprotocol`` sends the negotiated subprotocol;
    ``/ping`` pings the client and reports whether the pong came back;
    ``/close/CODE/REASON`` closes with that code and reason. Every connection
    puts ``("open", ws)`` then ``("closed", close frame received)`` in
    ``events``.
    """
    events.put(("open", ws))
    rcvd = None
    try:
        path = ws.request.path
        if path == "/echo":
            while True:
                fragments = list(ws.recv_streaming())
                ws.send(fragments if len(fragments) > 1 else fragments[0])
        elif path == "/subprotocol":
            ws.send(ws.subprotocol or "")
        elif path == "/ping":
            pong = ws.ping(b"server ping")
            ws.send("pong" if pong.wait(WAIT) else "no pong")
        elif path.startswith("/close/"):
            _, _, code, reason = path.split("/", 3)
            ws.close(int(code), urllib.parse.unquote(reason))
        while True:
            ws.recv()
    except CLOSED as exc:
        rcvd = exc.rcvd
    finally:
        events.put(("closed", rcvd))


class Peers:
    """One direction (which library is the client) and one compression setting."""

    def __init__(self, client: str, compression: str | None) -> None:
        self.client = client
        self.server = "websockets" if client == "wssync" else "wssync"
        self.compression = compression
        self.events: queue.Queue[Any] = queue.Queue()
        self._stops: list[Callable[[], None]] = []
        self.secure = False

    def serve(self, **options: Any) -> str:
        """Start a server of the other library; return its base URI."""
        options = {"compression": self.compression, "max_size": MAX_SIZE, **options}
        self.secure = options.get("ssl") is not None

        def handle(ws: Any) -> None:
            handler(ws, self.events)

        if self.server == "wssync":
            server = wssync.serve(handle, "127.0.0.1", 0, **options)
            server.start()
            self._stops.append(server.shutdown)
            port = server.port
        else:
            ws_server = websockets_server.serve(handle, "127.0.0.1", 0, **options)
            thread = threading.Thread(target=ws_server.serve_forever)
            thread.start()

            def stop() -> None:
                ws_server.shutdown()
                thread.join(WAIT)

            self._stops.append(stop)
            port = ws_server.socket.getsockname()[1]
        return f"{'wss' if self.secure else 'ws'}://127.0.0.1:{port}"

    def connect(self, uri: str, **options: Any) -> Any:
        """Open a client connection with this direction's client library."""
        options = {"compression": self.compression, "max_size": MAX_SIZE, **options}
        if self.client == "wssync":
            return wssync.connect(uri, **options)
        return websockets_client.connect(uri, **options)

    def server_event(self, kind: str) -> Any:
        """Return the next server-side event, which must be of this kind."""
        event = self.events.get(timeout=WAIT)
        assert event[0] == kind, event
        return event[1]

    def stop(self) -> None:
        for stop in self._stops:
            stop()


@pytest.fixture(
    params=[
        ("wssync", "deflate"),
        ("wssync", None),
        ("websockets", "deflate"),
        ("websockets", None),
    ],
    ids=lambda param: f"{param[0]}-client-{param[1] or 'uncompressed'}",
)
def peers(request: pytest.FixtureRequest) -> Iterator[Peers]:
    peers = Peers(*request.param)
    yield peers
    peers.stop()


# --------------------------------------------------------------------- tests


def received_fragments(ws: Any) -> list[Any]:
    """Return the fragments of the next message, without empty ones.

    Both libraries send an iterable as one frame per item and then an empty
    final frame, since they can't know in advance which item is the last;
    websockets' recv_streaming() yields that empty fragment, wssync's doesn't.
    """
    return [fragment for fragment in ws.recv_streaming() if fragment]


def test_handshake_and_compression_negotiated(peers: Peers) -> None:
    base = peers.serve()
    with peers.connect(f"{base}/echo") as ws:
        server_ws = peers.server_event("open")
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        # Both ends saw the same handshake response.
        assert server_ws.response.headers.get("Sec-WebSocket-Extensions") == extensions
        assert ws.response.status_code == 101
        assert server_ws.request.path == "/echo"
        if peers.compression is None:
            assert extensions is None
            assert "Sec-WebSocket-Extensions" not in ws.request.headers
        else:
            assert extensions is not None
            assert extensions.split(";")[0].strip() == "permessage-deflate"
            offer = ws.request.headers["Sec-WebSocket-Extensions"]
            assert offer.split(";")[0].strip() == "permessage-deflate"
        assert ws.subprotocol is None
        assert server_ws.subprotocol is None
        ws.send("after the handshake")
        assert ws.recv(timeout=WAIT) == "after the handshake"


def test_utf8_text(peers: Peers) -> None:
    base = peers.serve()
    with peers.connect(f"{base}/echo") as ws:
        for text in TEXTS:
            ws.send(text)
            echoed = ws.recv(timeout=WAIT)
            assert isinstance(echoed, str)
            assert echoed == text
        # Text given as UTF-8 bytes.
        ws.send("ünïcödé 🎉".encode(), text=True)
        assert ws.recv(timeout=WAIT) == "ünïcödé 🎉"


@pytest.mark.parametrize(
    "payload",
    BIG_PAYLOADS,
    ids=["random", "repetitive"],
)
def test_big_binary(peers: Peers, payload: bytes) -> None:
    base = peers.serve()
    with peers.connect(f"{base}/echo") as ws:
        ws.send(payload)
        echoed = ws.recv(timeout=WAIT)
        assert isinstance(echoed, bytes)
        assert len(echoed) == len(payload)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
        # A bytearray and a memoryview are bytes-like too.
        ws.send(memoryview(bytearray(payload[:100_000])))
        assert ws.recv(timeout=WAIT) == payload[:100_000]


@pytest.mark.parametrize(
    "fragments", [TEXT_FRAGMENTS, BINARY_FRAGMENTS], ids=["text", "binary"]
)
def test_fragmented_message(peers: Peers, fragments: list[Any]) -> None:
    base = peers.serve()
    with peers.connect(f"{base}/echo") as ws:
        # The peer receives the fragments one by one and sends them back
        # in the same fragments.
        ws.send(iter(fragments))
        assert received_fragments(ws) == fragments
        # The same message again, reassembled by recv().
        ws.send(fragments)
        assert ws.recv(timeout=WAIT) == fragments[0][:0].join(fragments)


def test_subprotocol(peers: Peers) -> None:
    base = peers.serve(subprotocols=["chat.v1", "chat.v2"])
    with peers.connect(
        f"{base}/subprotocol", subprotocols=["chat.v3", "chat.v2"]
    ) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "chat.v2"
        assert ws.recv(timeout=WAIT) == "chat.v2"
        assert peers.server_event("open").subprotocol == "chat.v2"


def test_no_subprotocol_offered(peers: Peers) -> None:
    base = peers.serve(subprotocols=["chat.v1"])
    if peers.server == "websockets":
        # A websockets server given subprotocols requires one (HTTP 400,
        # "missing subprotocol"); the wssync client reports the refusal.
        with pytest.raises(wssync.InvalidStatus) as raised:
            peers.connect(f"{base}/subprotocol")
        assert raised.value.response.status_code == 400
        return
    # A wssync server proceeds without one.
    with peers.connect(f"{base}/subprotocol") as ws:
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers
        assert ws.recv(timeout=WAIT) == ""


def test_client_ping(peers: Peers) -> None:
    base = peers.serve()
    with peers.connect(f"{base}/echo") as ws:
        assert ws.ping(b"client ping").wait(WAIT)
        assert ws.ping("text ping ☃").wait(WAIT)
        assert ws.ping().wait(WAIT)
        # An unsolicited pong is ignored by the peer.
        ws.pong(b"unsolicited")
        ws.send("still open")
        assert ws.recv(timeout=WAIT) == "still open"


def test_server_ping(peers: Peers) -> None:
    base = peers.serve()
    with peers.connect(f"{base}/ping") as ws:
        # The client answers the ping while no thread is in recv() yet.
        assert ws.recv(timeout=WAIT) == "pong"


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (1001, "going away"), (1011, "oops"), (4002, "custom ☃ reason")],
)
def test_server_closes(peers: Peers, code: int, reason: str) -> None:
    base = peers.serve()
    path = f"/close/{code}/{urllib.parse.quote(reason)}"
    with peers.connect(base + path) as ws:
        with pytest.raises(CLOSED) as raised:
            ws.recv(timeout=WAIT)
        assert isinstance(raised.value, CLOSED_OK if code < 1002 else CLOSED_ERROR)
        assert raised.value.rcvd.code == code
        assert raised.value.rcvd.reason == reason
        assert ws.close_code == code
        assert ws.close_reason == reason
    # The server got its close frame echoed.
    peers.server_event("open")
    echoed = peers.server_event("closed")
    assert echoed.code == code


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, ""), (1000, "done"), (4001, "bye ☃, 日本")]
)
def test_client_closes(peers: Peers, code: int, reason: str) -> None:
    base = peers.serve()
    with peers.connect(f"{base}/echo") as ws:
        ws.send("one message first")
        assert ws.recv(timeout=WAIT) == "one message first"
        ws.close(code, reason)
        assert ws.close_code == code
        with pytest.raises(CLOSED_OK if code == 1000 else CLOSED_ERROR):
            ws.recv(timeout=WAIT)
    peers.server_event("open")
    rcvd = peers.server_event("closed")
    assert (rcvd.code, rcvd.reason) == (code, reason)


def test_tls(peers: Peers, tls_files: Any) -> None:
    base = peers.serve(ssl=tls_files.server_context())
    assert base.startswith("wss://")
    with peers.connect(f"{base}/echo", ssl=tls_files.client_context()) as ws:
        for message in ["over TLS 🔒", os.urandom(2 * 2**20)]:
            ws.send(message)
            assert ws.recv(timeout=WAIT) == message
        ws.send(TEXT_FRAGMENTS)
        assert received_fragments(ws) == TEXT_FRAGMENTS
        assert ws.ping(b"secure ping").wait(WAIT)
    peers.server_event("open")
    assert peers.server_event("closed").code == 1000
