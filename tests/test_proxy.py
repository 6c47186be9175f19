"""connect() through an HTTP CONNECT proxy: a small one, run by the test on loopback."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import wssync

pytestmark = pytest.mark.timeout(30)


def echo(ws: wssync.ServerConnection) -> None:
    for message in ws:
        ws.send(message)


class ConnectProxy:
    """A minimal CONNECT proxy: records requests, relays bytes both ways."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.credentials = credentials
        self.requests: list[bytes] = []
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []
        self.accepter = threading.Thread(target=self.accept_loop, daemon=True)
        self.accepter.start()

    def accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            thread = threading.Thread(target=self.handle, args=(client,))
            self.threads.append(thread)
            thread.start()

    def handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        self.requests.append(head)
        request_line = head.split(b"\r\n", 1)[0].decode()
        _, target, _ = request_line.split(" ")
        if self.credentials is not None:
            expected = base64.b64encode(":".join(self.credentials).encode())
            if b"Proxy-Authorization: Basic " + expected not in head:
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                client.close()
                return
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        self.sockets.append(upstream)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        relay = threading.Thread(target=self.pipe, args=(upstream, client))
        self.threads.append(relay)
        relay.start()
        self.pipe(client, upstream)

    @staticmethod
    def pipe(source: socket.socket, destination: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                destination.sendall(data)
        with contextlib.suppress(OSError):
            destination.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        # close() alone doesn't wake a thread blocked in accept() on Linux.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.accepter.join(5)
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def server() -> Iterator[wssync.ThreadingServer]:
    with wssync.serve(echo, "127.0.0.1", 0) as server:
        yield server.start()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    proxy = ConnectProxy()
    yield proxy
    proxy.close()


def test_explicit_proxy(server: wssync.ThreadingServer, proxy: ConnectProxy) -> None:
    url = f"ws://127.0.0.1:{server.port}/"
    with wssync.connect(url, proxy=f"http://127.0.0.1:{proxy.port}") as ws:
        ws.send("through the tunnel")
        assert ws.recv(timeout=5) == "through the tunnel"
    assert proxy.requests[0].startswith(f"CONNECT 127.0.0.1:{server.port} ".encode())


def test_proxy_from_environment(
    server: wssync.ThreadingServer, proxy: ConnectProxy, monkeypatch: Any
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("env")
        assert ws.recv(timeout=5) == "env"
    assert len(proxy.requests) == 1
    # proxy=None ignores the environment.
    with wssync.connect(f"ws://127.0.0.1:{server.port}/", proxy=None) as ws:
        ws.send("direct")
        assert ws.recv(timeout=5) == "direct"
    assert len(proxy.requests) == 1


def test_no_proxy_bypasses(
    server: wssync.ThreadingServer, proxy: ConnectProxy, monkeypatch: Any
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with wssync.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        ws.send("bypassed")
        assert ws.recv(timeout=5) == "bypassed"
    assert proxy.requests == []


def test_proxy_authentication(server: wssync.ThreadingServer) -> None:
    proxy = ConnectProxy(credentials=("user", "p@ss"))
    try:
        url = f"ws://127.0.0.1:{server.port}/"
        with wssync.connect(
            url, proxy=f"http://user:p%40ss@127.0.0.1:{proxy.port}"
        ) as ws:
            ws.send("authenticated")
            assert ws.recv(timeout=5) == "authenticated"
        with pytest.raises(wssync.InvalidHandshake, match="407"):
            wssync.connect(url, proxy=f"http://127.0.0.1:{proxy.port}")
    finally:
        proxy.close()


def test_unsupported_proxy_scheme(server: wssync.ThreadingServer) -> None:
    with pytest.raises(ValueError, match="unsupported proxy"):
        wssync.connect(f"ws://127.0.0.1:{server.port}/", proxy="socks5://127.0.0.1:1")


_PROXY_NAMES = [
    f"{scheme}_proxy{suffix}"
    for scheme in ("http", "https", "all", "no")
    for suffix in ("", "_upper")
]


def _urllib_choice(host: str, secure: bool) -> str | None:
    """What proxy_for() answered when it scanned the environment with urllib."""
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    return proxies.get("https" if secure else "http") or proxies.get("all")


@pytest.mark.parametrize("seed", range(200))
def test_environment_lookup_matches_urllib(seed: int, monkeypatch: Any) -> None:
    # proxy_for() looks up the few variable names it needs instead of
    # scanning the environment with urllib: it must answer the same for
    # every mix of lower/upper-case, empty and missing variables, in and
    # out of a CGI script.
    import os
    import random

    from wssync.proxy import proxy_for
    from wssync.sansio.uri import parse_uri

    rng = random.Random(seed)
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    for entry in _PROXY_NAMES:
        name = entry.replace("_upper", "")
        if entry.endswith("_upper"):
            name = name.upper()
        choice = rng.choice(["missing", "empty", "set"])
        if choice == "missing":
            continue
        if choice == "empty":
            monkeypatch.setenv(name, "")
        elif name.lower() == "no_proxy":
            monkeypatch.setenv(name, rng.choice(["*", "example.com", ".com", "other"]))
        else:
            monkeypatch.setenv(name, f"http://{name}.test:3128")
    if rng.random() < 0.3:
        monkeypatch.setenv("REQUEST_METHOD", "GET")
    for uri in ("ws://example.com/", "wss://example.com/", "ws://127.0.0.1:8000/"):
        wsuri = parse_uri(uri)
        expected = _urllib_choice(wsuri.host, wsuri.secure)
        assert proxy_for(wsuri, True) == expected, (uri, dict(os.environ))


def test_environment_lookup_sees_every_change(monkeypatch: Any) -> None:
    # _getenv() reads os.environ's own dict: what a change through
    # os.environ (or monkeypatch) does must show at once, encoded as
    # os.environ encodes it (non-ASCII included).
    import os

    from wssync.proxy import _getenv

    monkeypatch.delenv("http_proxy", raising=False)
    assert _getenv("http_proxy") is None
    os.environ["http_proxy"] = "http://proxy.test:3128"
    try:
        assert _getenv("http_proxy") == "http://proxy.test:3128"
        os.environ["http_proxy"] = "http://prøxy.test:1"
        assert _getenv("http_proxy") == os.environ.get("http_proxy")
        os.environ["http_proxy"] = ""
        assert _getenv("http_proxy") == ""
    finally:
        del os.environ["http_proxy"]
    assert _getenv("http_proxy") is None


def test_environment_lookup_with_another_mapping(monkeypatch: Any) -> None:
    # An os.environ replaced by a plain mapping (as some test tools do) is
    # read the public way.
    import os

    from wssync.proxy import proxy_for
    from wssync.sansio.uri import parse_uri

    monkeypatch.setattr(os, "environ", {"http_proxy": "http://replaced.test:3128"})
    assert proxy_for(parse_uri("ws://example.com/"), True) == (
        "http://replaced.test:3128"
    )
    monkeypatch.setattr(os, "environ", {})
    assert proxy_for(parse_uri("ws://example.com/"), True) is None
