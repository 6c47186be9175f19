"""python -m wssync: the interactive client, run as a subprocess."""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import wssync

pytestmark = pytest.mark.timeout(30)


def echo(ws: wssync.ServerConnection) -> None:
    for message in ws:
        ws.send(message)


@pytest.fixture
def server() -> Iterator[wssync.ThreadingServer]:
    with wssync.serve(echo, "127.0.0.1", 0) as server:
        yield server.start()


def stop(process: subprocess.Popen[str]) -> None:
    """Kill the process if still running and release its pipes."""
    process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


def run_cli(*args: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "wssync", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        # stop() closes the pipe, possibly before this loop sees the end.
        with contextlib.suppress(ValueError, OSError):
            for line in process.stdout:
                lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return process, lines


def test_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wssync", "--help"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0
    assert "usage: python -m wssync" in result.stdout
    assert "--subprotocol" in result.stdout


def test_lines_sent_messages_printed_eof_closes(server: wssync.ThreadingServer) -> None:
    process, lines = run_cli(f"ws://127.0.0.1:{server.port}/")
    try:
        assert lines.get(timeout=10).startswith("Connected to ws://127.0.0.1:")
        assert process.stdin is not None
        process.stdin.write("hello\n")
        process.stdin.flush()
        assert lines.get(timeout=10) == "< hello"
        process.stdin.write("café ☕\n")
        process.stdin.flush()
        assert lines.get(timeout=10) == "< café ☕"
        process.stdin.close()  # Ctrl-D
        assert process.wait(timeout=10) == 0
        assert lines.get(timeout=10) == "Connection closed: 1000"
    finally:
        stop(process)


def test_server_close_ends_the_client(server: wssync.ThreadingServer) -> None:
    process, lines = run_cli(f"ws://127.0.0.1:{server.port}/")
    try:
        assert lines.get(timeout=10).startswith("Connected")
        server.shutdown()  # closes with 1001, going away
        assert lines.get(timeout=10) == "Connection closed: 1001"
        assert process.wait(timeout=10) == 0
    finally:
        stop(process)


def test_connection_failure_exit_status() -> None:
    result: Any = subprocess.run(
        [sys.executable, "-m", "wssync", "not-a-uri"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert "Failed to connect" in result.stderr
