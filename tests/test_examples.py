"""Every program in examples/, run as a subprocess and exercised by real clients.

Each server example is driven by wssync's own client and by the client of the
``websockets`` library as an independent peer; the example clients run against
the example servers. Servers listen on a free port (``--port 0``) and print a
"listening on ..." line once bound, which is what the tests wait for.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websockets.exceptions
import websockets.sync.client

import wssync

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

TIMEOUT = 10  # seconds to wait for anything that should happen at once


def is_proxy_variable(name):
    return name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Both clients read proxy settings from the environment: clear them."""
    for name in list(os.environ):
        if is_proxy_variable(name):
            monkeypatch.delenv(name)


def example_env():
    """Environment for examples: this checkout's wssync, no proxy, no buffering."""
    env = {k: v for k, v in os.environ.items() if not is_proxy_variable(k)}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_client(script, *args, input=None):
    """Run an example client to completion and return its stdout."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        input=input,
        capture_output=True,
        text=True,
        env=example_env(),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


class Example:
    """An example server in a subprocess, its stdout read line by line."""

    def __init__(self, script, *args):
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=example_env(),
        )
        self.lines = queue.Queue()
        self.interrupted = False
        self.stdout = []
        self.stderr = []
        self.readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)  # end of output

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def expect(self, pattern, timeout=TIMEOUT):
        """Wait for the next line of output matching pattern; return the match."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} in {timeout}s: {self}")
            if line is None:
                self.lines.put(None)  # keep reporting the end to later calls
                pytest.fail(f"exited before printing {pattern!r}: {self}")
            match = re.search(pattern, line)
            if match:
                return match

    def interrupt(self):
        """Press Ctrl-C, once: a second one would interrupt the shutdown."""
        if not self.interrupted and self.proc.poll() is None:
            self.interrupted = True
            self.proc.send_signal(signal.SIGINT)

    def stop(self):
        """Press Ctrl-C; kill the server if it does not exit in time.

        Return the exit code and the error output, without the traceback that
        Python may print for the KeyboardInterrupt itself.
        """
        self.interrupt()
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=TIMEOUT)
        self.proc.stdout.close()
        self.proc.stderr.close()
        errors = "".join(self.stderr)
        head, sep, tail = errors.rpartition("Traceback (most recent call last):")
        if sep and tail.rstrip().endswith("KeyboardInterrupt"):
            errors = head
        return self.proc.returncode, errors

    def assert_clean_exit(self):
        """Ctrl-C stops the server promptly, and it logged no error before."""
        returncode, errors = self.stop()
        # 0 if the example handles KeyboardInterrupt, -SIGINT if Python re-raises it.
        assert returncode in (0, -signal.SIGINT), (returncode, errors)
        assert "Traceback" not in errors, errors
        assert "ERROR" not in errors, errors
        return errors

    def __str__(self):
        return f"stdout={''.join(self.stdout)!r} stderr={''.join(self.stderr)!r}"


@pytest.fixture
def run_example():
    """Start example servers on free ports; stop them all after the test."""
    started = []

    def run(script, *args):
        example = Example(script, "--port", "0", *args)
        started.append(example)
        match = example.expect(r"listening on (\w+)://([^/\s]+):(\d+)")
        example.scheme, example.host, example.port = match[1], match[2], int(match[3])
        return example

    yield run
    for example in started:
        example.stop()


# The two clients every server is exercised with. Both have the same blocking
# API (connect, send, recv(timeout=...), close, iteration, close_code); only the
# exception classes differ.
CLIENTS = {
    "wssync": types.SimpleNamespace(
        name="wssync",
        connect=wssync.connect,
        ConnectionClosed=wssync.ConnectionClosed,
        ConnectionClosedOK=wssync.ConnectionClosedOK,
    ),
    "websockets": types.SimpleNamespace(
        name="websockets",
        connect=websockets.sync.client.connect,
        ConnectionClosed=websockets.exceptions.ConnectionClosed,
        ConnectionClosedOK=websockets.exceptions.ConnectionClosedOK,
    ),
}


@pytest.fixture(params=list(CLIENTS), ids=lambda name: f"{name}-client")
def client(request):
    return CLIENTS[request.param]


def http_get(url):
    """GET url without any proxy; return (status, content type, body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT) as response:
            body = response.read().decode()
            return response.status, response.headers["Content-Type"], body
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def parse_utc(timestamp):
    """Parse an ISO 8601 UTC timestamp as the examples send it."""
    assert timestamp.endswith(("Z", "+00:00")), timestamp
    parsed = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() == datetime.timedelta(0)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs(now - parsed) < datetime.timedelta(minutes=1), (now, parsed)
    return parsed


# echo


def test_echo_server(run_example, client):
    server = run_example("echo_server.py")
    with client.connect(f"ws://localhost:{server.port}") as ws:
        ws.send("Hello world!")
        assert ws.recv(timeout=TIMEOUT) == "Hello world!"
        ws.send(b"\x00\xffbinary")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\xffbinary"
        ws.send("é" * 100_000)
        assert ws.recv(timeout=TIMEOUT) == "é" * 100_000
    server.assert_clean_exit()


def test_echo_client(run_example):
    server = run_example("echo_server.py")
    output = run_client("echo_client.py", f"ws://localhost:{server.port}")
    assert output == "> Hello world!\n< Hello world!\n"
    server.assert_clean_exit()


def test_echo_server_many_clients(run_example):
    """Connections are served at the same time, one thread each."""
    server = run_example("echo_server.py")
    uri = f"ws://localhost:{server.port}"
    with (
        CLIENTS["wssync"].connect(uri) as ws1,
        CLIENTS["websockets"].connect(uri) as ws2,
    ):
        for n in range(10):
            ws1.send(f"one {n}")
            ws2.send(f"two {n}")
        for n in range(10):
            assert ws2.recv(timeout=TIMEOUT) == f"two {n}"
            assert ws1.recv(timeout=TIMEOUT) == f"one {n}"
    server.assert_clean_exit()


# hello


def test_hello_server(run_example, client):
    server = run_example("hello_server.py")
    with client.connect(f"ws://localhost:{server.port}") as ws:
        ws.send("Alice")
        assert ws.recv(timeout=TIMEOUT) == "Hello Alice!"
        # The handler returned, so the server closed the connection normally.
        with pytest.raises(client.ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1000
    server.expect(r"^< Alice$")
    server.expect(r"^> Hello Alice!$")
    server.assert_clean_exit()


def test_hello_client(run_example):
    server = run_example("hello_server.py")
    output = run_client(
        "hello_client.py", f"ws://localhost:{server.port}", input="Bob\n"
    )
    assert output == "What's your name? > Bob\n< Hello Bob!\n"
    server.expect(r"^< Bob$")
    server.expect(r"^> Hello Bob!$")
    server.assert_clean_exit()


# secure hello


@pytest.fixture
def localhost_pem(tmp_path):
    """A certificate for localhost made by the example's own script."""
    path = tmp_path / "localhost.pem"
    assert run_client("make_localhost_cert.py", str(path)) == f"wrote {path}\n"
    return path


def test_secure_hello_server(run_example, client, localhost_pem):
    server = run_example("secure_hello_server.py", "--cert", str(localhost_pem))
    assert server.scheme == "wss"
    ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ssl_context.load_verify_locations(localhost_pem)
    with client.connect(f"wss://localhost:{server.port}", ssl=ssl_context) as ws:
        ws.send("Alice")
        assert ws.recv(timeout=TIMEOUT) == "Hello Alice!"
    server.expect(r"^< Alice$")
    server.expect(r"^> Hello Alice!$")
    server.assert_clean_exit()


def test_secure_hello_server_untrusted(run_example, localhost_pem):
    """Without trusting localhost.pem, the client refuses the certificate."""
    server = run_example("secure_hello_server.py", "--cert", str(localhost_pem))
    with pytest.raises(ssl.SSLCertVerificationError):
        CLIENTS["wssync"].connect(f"wss://localhost:{server.port}")
    # The server shrugs off the failed TLS handshake and goes on serving.
    output = run_client(
        "secure_hello_client.py",
        f"wss://localhost:{server.port}",
        "--cert",
        str(localhost_pem),
        input="Carol\n",
    )
    assert output == "What's your name? > Carol\n< Hello Carol!\n"
    stop_errors = server.stop()[1]
    assert "Traceback" not in stop_errors.replace("SSL", ""), stop_errors


def test_secure_hello_client(run_example, localhost_pem):
    server = run_example("secure_hello_server.py", "--cert", str(localhost_pem))
    output = run_client(
        "secure_hello_client.py",
        f"wss://localhost:{server.port}",
        "--cert",
        str(localhost_pem),
        input="Bob\n",
    )
    assert output == "What's your name? > Bob\n< Hello Bob!\n"
    server.assert_clean_exit()


def test_secure_hello_server_without_certificate(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "secure_hello_server.py"),
            "--port",
            "0",
            "--cert",
            str(tmp_path / "missing.pem"),
        ],
        capture_output=True,
        text=True,
        env=example_env(),
        timeout=30,
    )
    assert result.returncode == 1
    assert "run make_localhost_cert.py first" in result.stderr


# clock


def test_clock(run_example, client):
    server = run_example("clock.py")
    assert server.host == "127.0.0.1"
    with client.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        # Intervals are random, up to 3 seconds each.
        times = [parse_utc(ws.recv(timeout=TIMEOUT)) for _ in range(3)]
    assert times == sorted(times)
    server.assert_clean_exit()


def test_clock_page(run_example):
    server = run_example("clock.py")
    status, content_type, body = http_get(f"http://127.0.0.1:{server.port}/")
    assert status == 200
    assert content_type.startswith("text/html")
    assert "new WebSocket(" in body
    status, content_type, _ = http_get(f"http://127.0.0.1:{server.port}/favicon.ico")
    assert status == 404
    server.assert_clean_exit()


# counter


def wait_for(ws, event):
    """Read JSON events from ws until event arrives; return the ones before it."""
    skipped = []
    while True:
        received = json.loads(ws.recv(timeout=TIMEOUT))
        if received == event:
            return skipped
        skipped.append(received)


def test_counter(run_example):
    server = run_example("counter.py")
    uri = f"ws://127.0.0.1:{server.port}/"
    with CLIENTS["wssync"].connect(uri) as alice:
        # A newcomer learns the value and everyone learns the number of users.
        assert wait_for(alice, {"type": "value", "value": 0}) == []
        assert wait_for(alice, {"type": "users", "count": 1}) == []

        with CLIENTS["websockets"].connect(uri) as bob:
            assert wait_for(bob, {"type": "value", "value": 0}) == []
            assert wait_for(bob, {"type": "users", "count": 2}) == []
            assert wait_for(alice, {"type": "users", "count": 2}) == []

            # Every change is pushed to both, in the same order.
            alice.send(json.dumps({"action": "plus"}))
            bob.send(json.dumps({"action": "plus"}))
            bob.send(json.dumps({"action": "minus"}))
            alice.send(json.dumps({"action": "plus"}))
            alice_sees = [json.loads(alice.recv(timeout=TIMEOUT)) for _ in range(4)]
            bob_sees = [json.loads(bob.recv(timeout=TIMEOUT)) for _ in range(4)]
            assert alice_sees == bob_sees
            assert alice_sees[-1] == {"type": "value", "value": 2}

            # An unsupported action is logged, and the connection goes on.
            bob.send(json.dumps({"action": "reset"}))
            bob.send(json.dumps({"action": "minus"}))
            assert wait_for(alice, {"type": "value", "value": 1}) == []
            assert wait_for(bob, {"type": "value", "value": 1}) == []

        # Bob left.
        assert wait_for(alice, {"type": "users", "count": 1}) == []

    returncode, errors = server.stop()
    assert returncode in (0, -signal.SIGINT), (returncode, errors)
    assert "unsupported event: {'action': 'reset'}" in errors
    assert "Traceback" not in errors, errors


def test_counter_clients(run_example, client):
    """Each client alone: value and users on arrival, then its own updates."""
    server = run_example("counter.py")
    with client.connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert wait_for(ws, {"type": "value", "value": 0}) == []
        assert wait_for(ws, {"type": "users", "count": 1}) == []
        for _ in range(3):
            ws.send(json.dumps({"action": "minus"}))
        for value in (-1, -2, -3):
            assert wait_for(ws, {"type": "value", "value": value}) == []
    server.assert_clean_exit()


def test_counter_page(run_example):
    server = run_example("counter.py")
    status, content_type, body = http_get(f"http://127.0.0.1:{server.port}/")
    assert status == 200
    assert content_type.startswith("text/html")
    assert body == (EXAMPLES / "counter.html").read_text(encoding="utf-8")
    server.assert_clean_exit()


# common patterns


def test_consumer(run_example, client):
    server = run_example("consumer.py")
    with client.connect(f"ws://localhost:{server.port}") as ws:
        ws.send("first")
        ws.send("second")
    server.expect(r"^< first$")
    server.expect(r"^< second$")
    server.assert_clean_exit()


def test_producer(run_example, client):
    server = run_example("producer.py", "--interval", "0.05")
    with client.connect(f"ws://localhost:{server.port}") as ws:
        times = [parse_utc(ws.recv(timeout=TIMEOUT)) for _ in range(3)]
    assert times == sorted(times)
    # The handler's send() fails after the client left; the server goes on.
    with client.connect(f"ws://localhost:{server.port}") as ws:
        parse_utc(ws.recv(timeout=TIMEOUT))
    server.assert_clean_exit()


def test_consumer_producer_client_leaves(run_example, client):
    """The client closes: the consumer side ends and takes the producer along."""
    server = run_example("consumer_producer.py", "--interval", "0.05")
    with client.connect(f"ws://localhost:{server.port}") as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "tick 1"
        ws.send("there")
        assert ws.recv(timeout=TIMEOUT) == "tick 2"
    server.expect(r"^< hi$")
    server.expect(r"^< there$")
    server.assert_clean_exit()


def test_consumer_producer_producer_ends(run_example, client):
    """The producer runs out: it closes, which ends the consumer side."""
    server = run_example("consumer_producer.py", "--interval", "0.05", "--count", "3")
    with client.connect(f"ws://localhost:{server.port}") as ws:
        ws.send("hi")
        # Iteration stops at the server's normal close.
        assert list(ws) == ["tick 1", "tick 2", "tick 3"]
        assert ws.close_code == 1000
    server.expect(r"^< hi$")
    server.assert_clean_exit()


def test_registration(run_example):
    server = run_example("registration.py")
    uri = f"ws://localhost:{server.port}"
    with CLIENTS["wssync"].connect(uri) as alice:
        server.expect(r"^1 connected$")
        assert alice.recv(timeout=TIMEOUT) == "Hello!"
        with CLIENTS["websockets"].connect(uri) as bob:
            server.expect(r"^2 connected$")
            # Everyone connected hears about the newcomer.
            assert bob.recv(timeout=TIMEOUT) == "Hello!"
            assert alice.recv(timeout=TIMEOUT) == "Hello!"
        server.expect(r"^1 connected$")
        with CLIENTS["websockets"].connect(uri) as carol:
            server.expect(r"^2 connected$")
            assert carol.recv(timeout=TIMEOUT) == "Hello!"
            assert alice.recv(timeout=TIMEOUT) == "Hello!"
        server.expect(r"^1 connected$")
    server.expect(r"^0 connected$")
    server.assert_clean_exit()


@pytest.mark.parametrize(
    "script",
    [
        "echo_server.py",
        "hello_server.py",
        "clock.py",
        "counter.py",
        "consumer.py",
        "producer.py",
        "consumer_producer.py",
        "registration.py",
    ],
)
def test_ctrl_c_with_open_connection(run_example, script):
    """Ctrl-C closes open connections with 1001 (going away) and exits."""
    server = run_example(script)
    host = "127.0.0.1" if server.scheme == "http" else "localhost"
    with CLIENTS["websockets"].connect(f"ws://{host}:{server.port}/") as ws:
        server.interrupt()
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            while True:
                ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1001
    server.assert_clean_exit()
