"""wssync.broadcast: many connections, a few of which never read.

1,000 clients connect to a wssync server; 10 of them complete the handshake
and then never read. Their TCP buffers are filled first (broadcasts of 1 MiB
messages to them alone, more than the kernel can buffer), then 50 messages are
broadcast to all 1,000. The 990 healthy clients must get all 50 in order, and
no broadcast call may wait for the stalled ones.

The clients are raw sockets: the stalled ones must really stop reading (a
WebSocket client library would read in the background), and 990 healthy ones
are read by one thread with a selector, which keeps the test fast. The 50
messages are small (1 KiB) so that even a healthy client whose reader lags
behind never has more than 50 KiB pending, far below what its socket buffers
hold: the test does not depend on how fast this machine reads.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import resource
import selectors
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

import wssync

pytestmark = pytest.mark.timeout(60)

CONNECTIONS = 1000
STALLED = 10
BROADCASTS = 50
MESSAGE_SIZE = 1024
PREFILL_SIZE = 1024 * 1024
# A broadcast that waited for a stalled peer would take until some timeout
# expires (seconds at least): a bound this loose only catches that, not slowness.
PROMPT = 1.0  # seconds
BATCH = 50  # connections opened at once, below any listen backlog

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def tcp_send_buffer_max():
    """The most a kernel lets a socket buffer for sending (Linux autotuning)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return 4 * 1024 * 1024  # Linux's default


def handshake(sock, port):
    """Send an opening handshake on sock; return the key to check the answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET / HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n"
        ).encode()
    )
    return key


def read_handshake_response(sock, key):
    """Read the 101 response; return any bytes received after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed during the handshake: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101 "), lines[0]
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in lines[1:])
    }
    assert headers["sec-websocket-accept"] == accept
    # No extension was offered, so messages arrive uncompressed.
    assert "sec-websocket-extensions" not in headers
    return rest


class Client:
    """A raw WebSocket client: its socket and the messages parsed from it."""

    def __init__(self, sock, buffer=b""):
        self.sock = sock
        self.buffer = bytearray(buffer)
        self.messages = []
        self.error = None

    def parse(self):
        """Parse complete frames out of the buffer (servers never mask)."""
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1]
            opcode, length, offset = first & 0x0F, second & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                (length,) = struct.unpack_from("!H", self.buffer, 2)
                offset = 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                (length,) = struct.unpack_from("!Q", self.buffer, 2)
                offset = 10
            if len(self.buffer) < offset + length:
                return
            payload = bytes(self.buffer[offset : offset + length])
            del self.buffer[: offset + length]
            if opcode == 0x1 and first & 0x80:  # a whole text message
                self.messages.append(payload)
            elif opcode in (0x9, 0xA):  # ping, pong: not part of the test
                pass
            else:
                self.error = f"unexpected frame: opcode {opcode}, {payload[:20]!r}"


class Reader:
    """Read many clients in one thread until each has `count` messages."""

    def __init__(self, clients, count):
        self.clients = clients
        self.count = count
        self.wake_r, self.wake_w = socket.socketpair()
        self.thread = threading.Thread(target=self.run)

    def run(self):
        with selectors.DefaultSelector() as selector:
            selector.register(self.wake_r, selectors.EVENT_READ, None)
            pending = 0
            for client in self.clients:
                client.parse()  # bytes that came with the handshake response
                client.sock.setblocking(False)
                selector.register(client.sock, selectors.EVENT_READ, client)
                pending += 1
            while pending:
                for key, _ in selector.select():
                    client = key.data
                    if client is None:
                        return  # stop() was called
                    try:
                        data = client.sock.recv(256 * 1024)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        data, client.error = b"", repr(exc)
                    if data:
                        client.buffer += data
                        client.parse()
                    else:
                        client.error = client.error or "connection closed"
                    if client.error or len(client.messages) >= self.count:
                        selector.unregister(client.sock)
                        pending -= 1

    def start(self):
        self.thread.start()

    def stop(self):
        self.wake_w.send(b"x")
        self.thread.join()
        self.wake_r.close()
        self.wake_w.close()


@pytest.fixture
def stack():
    with contextlib.ExitStack() as stack:
        yield stack


def test_broadcast_skips_stalled_peers(stack):
    raise_fd_limit(2 * CONNECTIONS + 200)

    # The server: each handler registers its connection and waits for the end.
    connections = []
    lock = threading.Lock()
    all_connected = threading.Event()

    def handler(websocket):
        with lock:
            connections.append(websocket)
            if len(connections) == CONNECTIONS:
                all_connected.set()
        for _message in websocket:
            pass

    server = wssync.serve(handler, "127.0.0.1", 0, ping_interval=None)
    # Shutting down last, after the clients are gone, is quick: no peer is
    # left to wait for in a closing handshake.
    stack.enter_context(server)
    server.start()
    port = server.port

    # The clients, BATCH at a time: connect and send the handshakes, then read
    # the responses. The stalled ones get a tiny receive buffer, to fill faster.
    clients = []
    stack.callback(lambda: [client.sock.close() for client in clients])
    for start in range(0, CONNECTIONS, BATCH):
        batch = []
        for n in range(start, min(start + BATCH, CONNECTIONS)):
            client = Client(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            clients.append(client)
            if n < STALLED:
                client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.sock.settimeout(30)
            client.sock.connect(("127.0.0.1", port))
            batch.append((client, handshake(client.sock, port)))
        for client, key in batch:
            client.buffer += read_handshake_response(client.sock, key)
    stalled, healthy = clients[:STALLED], clients[STALLED:]

    assert all_connected.wait(timeout=30), f"{len(connections)} connected"
    stalled_addresses = {client.sock.getsockname() for client in stalled}
    stalled_connections = [
        ws for ws in connections if tuple(ws.remote_address[:2]) in stalled_addresses
    ]
    assert len(stalled_connections) == STALLED

    durations = []

    def timed_broadcast(targets, message):
        start = time.monotonic()
        wssync.broadcast(targets, message)
        durations.append(time.monotonic() - start)

    # Fill the stalled peers' buffers: send them more than can be held on the
    # way (the server's largest TCP send buffer, their tiny receive buffer, and
    # a margin for what the library may buffer itself).
    prefill = -(-(tcp_send_buffer_max() + 2 * PREFILL_SIZE) // PREFILL_SIZE)
    for _ in range(prefill):
        timed_broadcast(stalled_connections, b"\0" * PREFILL_SIZE)
    for client in stalled:
        # The data did reach them: they are stalled, not skipped from the start.
        # (0x82: the first byte of a binary frame.)
        assert client.sock.recv(1, socket.MSG_PEEK) == b"\x82"

    # The 50 broadcasts to everyone, while the healthy clients are being read.
    reader = Reader(healthy, BROADCASTS)
    reader.start()
    stack.callback(reader.stop)
    for n in range(BROADCASTS):
        message = f"{n:04d}".ljust(MESSAGE_SIZE, ".")
        timed_broadcast(connections, message)
    reader.thread.join(timeout=30)
    assert not reader.thread.is_alive(), "healthy clients did not get every message"

    expected = [f"{n:04d}".ljust(MESSAGE_SIZE, ".").encode() for n in range(BROADCASTS)]
    failures = [
        (n, client.error, len(client.messages))
        for n, client in enumerate(healthy)
        if client.error or client.messages != expected
    ]
    assert failures == [], f"{len(failures)} healthy clients failed"

    slowest = max(durations)
    assert slowest < PROMPT, f"a broadcast took {slowest:.3f}s"
