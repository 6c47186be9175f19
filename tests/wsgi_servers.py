"""Real WSGI servers as subprocesses on 127.0.0.1, and the checks run against them.

Shared by tests/test_wsgi.py, tests/test_flask.py and tests/test_django.py.
Each server listens on a free port (port 0) and prints it in a line the
tests wait for (with a deadline: no sleeping); :meth:`ServerProcess.stop`
ends it and returns everything it printed, which :func:`assert_clean_log`
checks for errors.
"""

from __future__ import annotations

import base64
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import websockets.sync.client

import wssync

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
APPS = TESTS / "wsgi_apps"
DJANGO_PROJECT = TESTS / "django_project"

#: Seconds for a server to print its port; generous for a loaded CI machine.
START_TIMEOUT = 30
#: Seconds for any client operation against a server.
TIMEOUT = 10


def _gunicorn_options() -> list[str]:
    import gunicorn.config

    options = []
    names = {setting.name for setting in gunicorn.config.KNOWN_SETTINGS}
    if "control_socket_disable" in names or "no_control_socket" in names:
        # Several gunicorns at once would share ~/.gunicorn/gunicorn.ctl.
        options.append("--no-control-socket")
    return options


def command(kind: str, target: str) -> tuple[list[str], Path, str]:
    """The command line, working directory and readiness pattern of a server.

    Args:
        kind: ``werkzeug``, ``werkzeug-debug``, ``wsgiref``, ``gunicorn-gthread``,
            ``gunicorn-sync`` or ``runserver``.
        target: ``module:app`` (or ``module:factory()``); the Django project
            for ``runserver``.
    """
    python = sys.executable
    if kind in ("werkzeug", "werkzeug-debug", "wsgiref"):
        return [python, "serve.py", kind, target], APPS, r"^PORT (\d+)$"
    if kind.startswith("gunicorn-"):
        worker = kind.split("-", 1)[1]
        cwd = DJANGO_PROJECT if target.startswith("echoproject") else APPS
        args = [python, "-m", "gunicorn", "-k", worker, "-w", "1"]
        if worker == "gthread":
            args += ["--threads", "32"]
        args += ["-b", "127.0.0.1:0", "--access-logfile", "-", "--log-level", "info"]
        args += ["--graceful-timeout", "5"]
        args += _gunicorn_options()
        return [*args, target], cwd, r"Listening at: http://127\.0\.0\.1:(\d+)"
    if kind == "runserver":
        args = [python, "manage.py", "runserver", "--noreload", "127.0.0.1:0"]
        return args, DJANGO_PROJECT, r"development server at http://127\.0\.0\.1:(\d+)/"
    raise ValueError(kind)


class ServerProcess:
    """A WSGI server running in a subprocess."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind = kind
        args, cwd, ready = command(kind, target)
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(cwd), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.port = self._wait_for(re.compile(ready))
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def _wait_for(self, pattern: re.Pattern[str]) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.kind} didn't start:\n{self.output}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.kind} exited:\n{self.output}")
            match = pattern.search(line)
            if match:
                return int(match.group(1))

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> str:
        """Stop the server (idempotent) and return all it printed."""
        if self.process.poll() is None:
            # gunicorn: SIGTERM, its graceful shutdown, lets a worker finish
            # the request in progress (SIGINT would interrupt it and log an
            # error). The others: SIGINT, a KeyboardInterrupt in the main
            # thread, which only accepts connections.
            graceful = self.kind.startswith("gunicorn")
            self.process.send_signal(signal.SIGTERM if graceful else signal.SIGINT)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return self.output


# ------------------------------------------------------------------ checks


def echo_with_wssync(url: str) -> None:
    with wssync.connect(url, open_timeout=TIMEOUT) as ws:
        for message in ["hello", b"\x00\x01binary", "é" * 10_000]:
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message


def echo_with_websockets(url: str) -> None:
    with websockets.sync.client.connect(url, open_timeout=TIMEOUT) as ws:
        for message in ["hello", b"\x00\x01binary"]:
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message


def concurrent_echo(url: str, count: int = 20) -> None:
    """Hold ``count`` connections open at once and echo on each."""
    connections = []
    try:
        with ThreadPoolExecutor(count) as pool:
            connections = list(
                pool.map(
                    lambda _: wssync.connect(url, open_timeout=TIMEOUT), range(count)
                )
            )
        assert len(connections) == count
        for index, ws in enumerate(connections):
            ws.send(f"message {index}")
        for index, ws in enumerate(connections):
            assert ws.recv(timeout=TIMEOUT) == f"message {index}"
    finally:
        for ws in connections:
            ws.close()


def http_get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read().decode()


def check_plain_route(url: str) -> None:
    status, _, body = http_get(url)
    assert (status, body) == (200, "plain HTTP still works\n")


def check_not_websocket(url: str) -> None:
    """A plain GET on a WebSocket route gets a 426 that says why."""
    status, _, body = http_get(url)
    assert status == 426
    assert "Failed to open a WebSocket connection" in body
    assert "WebSocket client" in body


def check_handler_failure(fail_url: str, echo_url: str) -> None:
    """A handler exception closes with 1011; the worker serves on."""
    ws = wssync.connect(fail_url, open_timeout=TIMEOUT)
    ws.send("make it fail")
    try:
        ws.recv(timeout=TIMEOUT)
    except wssync.ConnectionClosedError as exc:
        assert exc.rcvd is not None
        assert exc.rcvd.code == 1011
    else:  # pragma: no cover
        raise AssertionError("the connection stayed open")
    finally:
        ws.close()
    echo_with_wssync(echo_url)


def _handshake(port: int, path: str, extra: bytes = b"") -> socket.socket:
    """Open a raw connection, send a handshake (and ``extra``), read the 101."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    sock.sendall(request + extra)
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)  # one byte at a time: leave the frames unread
        assert data, f"EOF during the handshake: {head!r}"
        head += data
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (payload under 126 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


def check_wire_after_close(port: int, echo_path: str) -> None:
    """Nothing but frames on the wire, then EOF: no stray HTTP response.

    Also sends a frame right behind the handshake request, before the 101
    (against RFC 6455 §4.1, but it mustn't get lost in the server's buffer).
    """
    with _handshake(port, echo_path, _frame(0x1, b"early")) as sock:
        assert _read_exactly(sock, 7) == b"\x81\x05early"
        sock.sendall(_frame(0x1, b"hello"))
        assert _read_exactly(sock, 7) == b"\x81\x05hello"
        sock.sendall(_frame(0x8, struct.pack("!H", 1000)))
        rest = _read_all(sock)
    assert rest == b"\x88\x02\x03\xe8", rest


def check_server_closes(port: int, path: str, expected: bytes) -> None:
    """A handler that returns: its messages, a close frame, then EOF."""
    with _handshake(port, path) as sock:
        data = b""
        closing = b"\x88\x02\x03\xe8"
        while not data.endswith(closing):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        sock.sendall(_frame(0x8, struct.pack("!H", 1000)))
        data += _read_all(sock)
    assert data == expected + closing, data


def assert_clean_log(output: str) -> None:
    """No error in a server's output but the expected handler failure."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if "Traceback" in line:
            # Only after "connection handler failed", for the failing route.
            assert index > 0 and "connection handler failed" in lines[index - 1], output
            block = "\n".join(lines[index : index + 40])
            assert "boom (expected by the test)" in block, output
    unexpected = re.compile(
        r"\[ERROR\]|\[CRITICAL\]|Error on request|Internal Server Error"
        r'|" 500 |Exception in|Socket error|Broken pipe|Debugging middleware'
    )
    bad = [line for line in lines if unexpected.search(line)]
    assert not bad, output
