"""Fixtures shared by several test modules."""

from __future__ import annotations

import dataclasses
import pathlib
import socket
import ssl
import sys
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import wssync
from wssync.sansio.protocol import Side


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """A test CA and a certificate for 127.0.0.1 / localhost / ::1 that it signed.

    Attributes:
        ca_pem: the CA certificate (PEM), for clients outside Python.
        cert_pem: the server's certificate chain (PEM).
        key_pem: the server's private key (PEM).
    """

    ca_pem: pathlib.Path
    cert_pem: pathlib.Path
    key_pem: pathlib.Path

    def server_context(self) -> ssl.SSLContext:
        """Return a server-side context presenting the certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_pem, self.key_pem)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Return a client-side context that trusts the test CA only."""
        return ssl.create_default_context(cafile=str(self.ca_pem))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """Certificates made with trustme, written to a temporary directory."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    directory = tmp_path_factory.mktemp("tls")
    files = TLSFiles(
        ca_pem=directory / "ca.pem",
        cert_pem=directory / "cert.pem",
        key_pem=directory / "key.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca_pem))
    cert.private_key_pem.write_to_path(str(files.key_pem))
    for index, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(files.cert_pem), append=index > 0)
    return files


def _echo(ws: wssync.ServerConnection) -> None:
    try:
        for message in ws:
            ws.send(message)
    except wssync.ConnectionClosed:
        pass


@pytest.fixture
def wssync_server() -> Iterator[Callable[..., wssync.ThreadingServer]]:
    """Start wssync servers on 127.0.0.1 (an echo by default); shut them down after.

    Call it as ``wssync_server(handler=None, **options)``; the server is
    already serving (``server.start()``) when it returns.
    """
    servers: list[wssync.ThreadingServer] = []

    def start(
        handler: Callable[..., Any] | None = None, **options: Any
    ) -> wssync.ThreadingServer:
        server = wssync.serve(handler or _echo, "127.0.0.1", 0, **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture(params=[Side.CLIENT, Side.SERVER], ids=["client", "server"])
def side(request: pytest.FixtureRequest) -> Side:
    """Run the test as a client and as a server."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def unanswered_address() -> Iterator[tuple[str, int]]:
    """A loopback address whose connects get no answer, and stay in progress.

    A listener's accept queue, full and never emptied: Linux drops the SYNs
    of later connections.
    """
    if sys.platform != "linux":
        pytest.skip("Linux drops SYNs beyond a full accept queue")
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        address = full.getsockname()
        fillers = [socket.socket() for _ in range(4)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(address)
            yield address
        finally:
            for filler in fillers:
                filler.close()
