"""A bounded stress test: 500 concurrent connections through one server.

Issue 4, "Done when": 500 connections exchange messages through one server
at the same time while some clients vanish in the middle of a message; every
message of the surviving clients is accounted for, on both sides.

Sized for a 2-core CI machine: a few seconds. 450 clients are wssync
clients (half of them with permessage-deflate), driven by 10 threads; 50 are
raw sockets that send some messages, then half a frame, then vanish (half
with a FIN, half with a RST, as a crashed peer's kernel would send).
"""

from __future__ import annotations

import concurrent.futures
import queue
import random
import resource
import threading
import time
from typing import Any

import pytest
from rawpeer import BINARY, TEXT, RawPeer, build_frame, running_server

import wssync

pytestmark = pytest.mark.timeout(90)

CONNECTIONS = 500
VANISHING = 50
DRIVERS = 10  # client threads, each driving CONNECTIONS / DRIVERS connections
ROUNDS = 10  # messages per surviving client


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.fixture
def fd_limit() -> Any:
    # Per connection: a socket on each side, and the handler thread's waker
    # (a socket pair). Plus headroom for the rest of the test session.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raise_fd_limit(CONNECTIONS * 4 + 1024)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def message_for(client: int, index: int, rng: random.Random) -> str | bytes:
    """A message that names its sender and its place; text or binary."""
    size = rng.choice([0, 10, 100, 1000, 20_000])
    head = f"{client}:{index}:"
    if rng.random() < 0.5:
        return head + "é" * (size // 2)
    return head.encode() + rng.randbytes(size)


def test_500_connections_with_vanishing_clients(fd_limit: Any) -> None:
    # What the server saw, per connection: messages received, how it ended.
    endings: queue.Queue[tuple[str, int, BaseException | None]] = queue.Queue()

    def handler(ws: wssync.ServerConnection) -> None:
        count = 0
        error: BaseException | None = None
        try:
            for message in ws:
                count += 1
                ws.send(message)
        except wssync.ConnectionClosed as exc:
            error = exc
        endings.put((ws.path, count, error))

    start = time.monotonic()
    with running_server(handler, close_timeout=5) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        # Everyone connects before anyone sends: 500 connections at once.
        everyone_connected = threading.Barrier(DRIVERS)

        def drive(driver: int) -> dict[str, Any]:
            rng = random.Random(driver)
            ids = range(driver, CONNECTIONS, DRIVERS)
            vanishing = {
                i for i in ids if i // DRIVERS % (CONNECTIONS // VANISHING) == 0
            }
            clients: dict[int, Any] = {}
            try:
                for i in ids:
                    if i in vanishing:
                        clients[i] = RawPeer.connect(server.port, f"/v{i}")
                    else:
                        clients[i] = wssync.connect(
                            f"{uri}/c{i}",
                            compression="deflate" if i % 2 else None,
                            open_timeout=30,
                            close_timeout=2,
                        )
                everyone_connected.wait(timeout=60)
                return exchange(rng, ids, vanishing, clients)
            except BaseException:
                everyone_connected.abort()  # don't leave the others waiting
                raise
            finally:
                for client in clients.values():
                    client.close()

        def exchange(
            rng: random.Random, ids: range, vanishing: set[int], clients: dict[int, Any]
        ) -> dict[str, Any]:
            # A vanishing client sends a few whole messages first.
            vanish_at = {i: rng.randrange(ROUNDS) for i in vanishing}
            sent: dict[int, list[str | bytes]] = {i: [] for i in ids}
            for index in range(ROUNDS):
                for i, client in clients.items():
                    if i in vanishing:
                        if index < vanish_at[i]:
                            client.send_frame(BINARY, b"%d:%d:" % (i, index))
                            sent[i].append(b"")
                        elif index == vanish_at[i]:
                            # Half a frame, then gone.
                            frame = build_frame(TEXT, b"x" * 1000, mask=True)
                            client.sock.sendall(frame[:500])
                            if i % 2:
                                client.abort()
                            else:
                                client.close()
                        continue
                    message = message_for(i, index, rng)
                    client.send(message)
                    sent[i].append(message)
                for i, client in clients.items():
                    if i not in vanishing:
                        assert client.recv(timeout=30) == sent[i][index]
            for i, client in clients.items():
                if i not in vanishing:
                    client.close()
                    assert client.close_code == 1000
            return {
                "survivors": len(ids) - len(vanishing),
                "vanished": {f"/v{i}": len(sent[i]) for i in vanishing},
            }

        with concurrent.futures.ThreadPoolExecutor(DRIVERS) as pool:
            futures = [pool.submit(drive, driver) for driver in range(DRIVERS)]
            reports = [future.result(timeout=80) for future in futures]

        survivors = sum(report["survivors"] for report in reports)
        vanished: dict[str, int] = {}
        for report in reports:
            vanished.update(report["vanished"])
        assert survivors == CONNECTIONS - VANISHING
        assert len(vanished) == VANISHING

        # Every handler ended, each exactly once.
        seen = [endings.get(timeout=30) for _ in range(CONNECTIONS)]
        assert len({path for path, _, _ in seen}) == CONNECTIONS
        for path, count, error in seen:
            if path.startswith("/c"):
                # Every message of a surviving client got to the server (and
                # back: the client checked each echo, in order).
                assert count == ROUNDS, (path, count)
                assert error is None, (path, error)
            else:
                # A vanished client: no close frame; its whole messages
                # arrived, unless its RST destroyed them in flight.
                assert isinstance(error, wssync.ConnectionClosedError), (path, error)
                assert error.rcvd is None
                assert count <= vanished[path]
                if int(path[2:]) % 2 == 0:  # a FIN: nothing was lost
                    assert count == vanished[path], (path, count)
        # The server is still fine.
        with wssync.connect(f"{uri}/after") as ws:
            ws.send("still serving")
            assert ws.recv(timeout=5) == "still serving"
    elapsed = time.monotonic() - start
    # Shut down: no handler thread is left behind.
    handlers = [t for t in threading.enumerate() if t.name.startswith("wssync-handler")]
    for thread in handlers:
        thread.join(5)
    assert not [t.name for t in handlers if t.is_alive()]
    assert elapsed < 60, f"took {elapsed:.1f} s"
