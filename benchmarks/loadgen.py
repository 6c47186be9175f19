"""The lean load generator: ``python -m benchmarks.loadgen '<json params>'``.

Drives the server scenarios against any server, and is the raw-TCP client of
the client scenarios. Raw sockets, no WebSocket library: frames are built
ahead of time (:mod:`benchmarks.proto`), and every echoed payload is checked
for byte equality with what was sent.

Two modes, given by the runner:

``ws``
    The server is a WebSocket server: replies are unmasked server frames
    (for S1z / S3z, compressed ones, decompressed before comparing).
``echo``
    The server is the raw-TCP echo: a reply is the very bytes sent.

Params (JSON): ``scenario``, ``host``, ``port``, ``mode``, ``duration`` and
``warmup`` (seconds), ``conns`` (S4, S6), ``server_pid`` (S6).
Prints one ``RESULT <json>`` line, then waits for stdin to close (the
connections stay open until the runner has stopped the server).
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

from . import child, proto
from .proto import FrameError

perf = time.perf_counter


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[
        min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    ]


class CpuMeter:
    """CPU time of the process under test over the measured window.

    Wall-clock rates swing with the machine's load; the CPU time each
    operation costs the implementation swings much less. For a server,
    utime + stime from /proc/PID/stat (exited threads included, 10 ms
    ticks); for this process (the raw client), :func:`time.process_time`.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.started: float | None = None

    def now(self) -> float:
        if self.pid is None:
            return time.process_time()
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def start(self) -> None:
        self.started = self.now()

    def per_op(self, count: int) -> dict[str, float]:
        if self.started is None or not count:
            return {}
        return {"cpu_us": (self.now() - self.started) / count * 1e6}


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_meter(p: dict[str, Any]) -> CpuMeter:
    return CpuMeter(p["server_pid"] if p.get("cpu_of") == "server" else None)


class Window:
    """A run's operations one after the other: warm-up, then the measured time.

    Iterating yields each operation's start time until the run is over (and
    starts the CPU meter when the measured part begins); :meth:`done` times
    an operation, :meth:`result` sums the measured ones up.
    """

    def __init__(self, p: dict[str, Any], meter: CpuMeter) -> None:
        self.meter = meter
        self.measure_from = perf() + p["warmup"]
        self.end = self.measure_from + p["duration"]
        self.latencies: list[float] = []

    def __iter__(self) -> Iterator[float]:
        meter, measure_from, end = self.meter, self.measure_from, self.end
        while True:
            t0 = perf()
            if t0 >= end:
                return
            if meter.started is None and t0 >= measure_from:
                meter.start()
            yield t0

    def done(self, t0: float) -> bool:
        """Record the operation started at ``t0``; whether it is measured."""
        if t0 < self.measure_from:
            return False
        self.latencies.append(perf() - t0)
        return True

    def result(self, sent_bytes: int | None = None, **extra: Any) -> dict[str, Any]:
        """Count, rate, latencies and CPU time of the measured operations.

        Args:
            sent_bytes: Payload bytes the measured operations echoed, for MB/s.
            extra: More entries for the result.
        """
        count = len(self.latencies)
        elapsed = perf() - self.measure_from
        if sent_bytes is not None:
            extra["mb_per_s"] = sent_bytes / elapsed / 1e6
        return {
            "count": count,
            "verified": count,
            "elapsed": elapsed,
            "rate": count / elapsed,
            **extra,
            **latency_stats(self.latencies),
            **self.meter.per_op(count),
        }


def latency_stats(latencies: list[float]) -> dict[str, float]:
    latencies.sort()
    return {
        "p50_us": percentile(latencies, 0.50) * 1e6,
        "p99_us": percentile(latencies, 0.99) * 1e6,
    }


class Peer:
    """A connection after the opening handshake."""

    def __init__(self, host: str, port: int, offer: str | None = None) -> None:
        self.sock = sock = proto.connect_tcp(host, port)
        sock.sendall(proto.handshake_request(host, port, extensions=offer))
        head, self.leftover = proto.read_head(sock)
        status, headers = proto.parse_response_head(head)
        if status != 101:
            raise FrameError(f"handshake failed: {head!r}")
        if headers.get("sec-websocket-accept") != proto.ACCEPT:
            raise FrameError(f"bad Sec-WebSocket-Accept: {head!r}")
        self.extensions = headers.get("sec-websocket-extensions")
        params = proto.parse_extensions(self.extensions)
        # Window of the server's compressor (what we decompress with) and of
        # ours (at most what we offered, less if the server asks).
        self.server_wbits = int(params.get("server_max_window_bits") or 15)
        self.client_wbits = min(12, int(params.get("client_max_window_bits") or 12))
        if offer and params and "server_no_context_takeover" not in params:
            raise FrameError(f"server_no_context_takeover refused: {self.extensions}")
        self.deflate = bool(params)

    def close(self) -> None:
        """Closing handshake, then wait for the server to close TCP."""
        sock = self.sock
        try:
            sock.sendall(proto.client_frame(proto.CLOSE, proto.CLOSE_1000))
            sock.settimeout(5)
            while sock.recv(65536):
                pass
        except OSError:
            pass
        sock.close()


class MessageReader:
    """Reads whole messages, for replies whose bytes can't be predicted
    (compressed by the server)."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(leftover)

    def read(self) -> tuple[bool, int, bytes]:
        """Return ``(compressed, opcode, payload)`` of the next data message."""
        parts: list[bytes] = []
        compressed = False
        opcode = 0
        buf = self.buf
        while True:
            frame = proto.parse_frame(buf)
            if frame is None:
                data = self.sock.recv(262144)
                if not data:
                    raise FrameError("connection closed by the server")
                buf += data
                continue
            fin, rsv1, op, payload, end = frame
            del buf[:end]
            if op >= proto.CLOSE:
                if op == proto.CLOSE:
                    raise FrameError(f"server closed: {payload!r}")
                if op == proto.PING:
                    self.sock.sendall(proto.client_frame(proto.PONG, payload))
                continue
            if op != proto.CONT:
                opcode, compressed = op, rsv1
            parts.append(payload)
            if fin:
                return compressed, opcode, b"".join(parts)


# ---------------------------------------------------------------- scenarios


def _prepare(
    peer: Peer | None, mode: str, opcode: int, payloads: list[bytes], deflate: bool
) -> tuple[list[bytes], list[bytes | None]]:
    """Frames to send and, where they are predictable, the exact replies."""
    wbits = peer.client_wbits if peer is not None else 12
    frames: list[bytes] = []
    expects: list[bytes | None] = []
    for payload in payloads:
        if deflate:
            frame = proto.client_frame(opcode, proto.deflate(payload, wbits), rsv1=True)
        else:
            frame = proto.client_frame(opcode, payload)
        frames.append(frame)
        if mode == "echo":
            expects.append(frame)
        elif deflate:
            expects.append(None)  # compressed by the server: decompress and compare
        else:
            expects.append(proto.server_frame(opcode, payload))
    return frames, expects


def pingpong(p: dict[str, Any], opcode: int, payloads: list[bytes], deflate: bool):
    """One connection, one message in flight: S1, S1z, S3, S3z (C1, C2 raw)."""
    peer = Peer(p["host"], p["port"], proto.DEFLATE_OFFER if deflate else None)
    if deflate and p["mode"] == "ws" and not peer.deflate:
        raise FrameError("the server didn't accept permessage-deflate")
    frames, expects = _prepare(peer, p["mode"], opcode, payloads, deflate)
    sock = peer.sock
    reader = MessageReader(sock, peer.leftover)
    if peer.leftover and expects[0] is not None:
        raise FrameError(f"unexpected bytes after the handshake: {peer.leftover!r}")
    # One reused buffer per reply size: compared whole, without slicing.
    buffers = {len(e): bytearray(len(e)) for e in expects if e is not None}
    views = {n: memoryview(b) for n, b in buffers.items()}
    # Compressed replies already decompressed and found equal: without context
    # takeover, the same compressed bytes always decompress to the same text.
    known: dict[bytes, int] = {}
    server_wbits = peer.server_wbits
    compressed_replies = 0
    sent_bytes = 0
    index, total = 0, len(frames)
    sendall, recv_into = sock.sendall, sock.recv_into
    window = Window(p, cpu_meter(p))
    for count, t0 in enumerate(window):
        expect = expects[index]
        sendall(frames[index])
        if expect is not None:
            size = len(expect)
            view = views[size]
            got = 0
            while got < size:
                n = recv_into(view[got:])
                if not n:
                    raise FrameError("connection closed by the server")
                got += n
            if buffers[size] != expect:
                raise FrameError(f"reply {count} differs from what was sent")
        else:
            compressed, reply_opcode, data = reader.read()
            if reply_opcode != opcode:
                raise FrameError(f"reply opcode {reply_opcode}, expected {opcode}")
            if compressed:
                compressed_replies += 1
                if known.get(data) != index:
                    if proto.inflate(data, server_wbits) != payloads[index]:
                        raise FrameError(f"reply {count} differs from what was sent")
                    known[data] = index
            elif data != payloads[index]:
                raise FrameError(f"reply {count} differs from what was sent")
        if window.done(t0):
            sent_bytes += len(payloads[index])
        index = (index + 1) % total
    result = window.result(
        sent_bytes=sent_bytes,
        extensions=peer.extensions,
        compressed_replies=compressed_replies,
    )
    return result, [peer]


def pipelined(p: dict[str, Any], depth: int = 64, size: int = 1024):
    """One connection, ``depth`` 1 KiB binary messages in flight: S2."""
    peer = Peer(p["host"], p["port"])
    payloads = proto.binary_payloads(depth, size)
    frames, expects = _prepare(peer, p["mode"], proto.BINARY, payloads, False)
    out_size = len(frames[0])
    in_size = len(expects[0])  # type: ignore[arg-type]
    # The replies form a periodic byte stream: compare every chunk read with it.
    period = b"".join(expects)  # type: ignore[arg-type]
    period_len = len(period)
    expected_stream = period + period
    outgoing = b"".join(frames) * 2
    sock = peer.sock
    if peer.leftover:
        raise FrameError(f"unexpected bytes after the handshake: {peer.leftover!r}")
    buf = bytearray(262144)
    received = 0  # bytes
    done = 0  # complete messages
    sent = depth
    sock.sendall(outgoing[: depth * out_size])
    recv_into, sendall = sock.recv_into, sock.sendall
    meter = cpu_meter(p)
    start = perf()
    measure_from = start + p["warmup"]
    end = measure_from + p["duration"]
    done_at_start = None
    while True:
        now = perf()
        if now >= end:
            break
        if done_at_start is None and now >= measure_from:
            done_at_start, measure_from = done, now
            meter.start()
        n = recv_into(buf)
        if not n:
            raise FrameError("connection closed by the server")
        offset = received % period_len
        checked = 0
        while checked < n:
            chunk = min(n - checked, period_len)
            if (
                buf[checked : checked + chunk]
                != expected_stream[offset : offset + chunk]
            ):
                raise FrameError(f"reply stream differs at byte {received + checked}")
            checked += chunk
            offset = (offset + chunk) % period_len
        received += n
        complete = received // in_size
        new = complete - done
        if new:
            first = sent % depth
            sendall(outgoing[first * out_size : (first + new) * out_size])
            sent += new
            done = complete
    elapsed = perf() - measure_from
    count = done - (done_at_start or 0)
    return {
        "count": count,
        "verified": count,
        "elapsed": elapsed,
        "rate": count / elapsed,
        "mb_per_s": count * size / elapsed / 1e6,
        **meter.per_op(count),
    }, [peer]


class _Slot:
    __slots__ = ("buf", "got", "index", "peer", "sock", "t0", "view")


def concurrent(p: dict[str, Any]):
    """``conns`` connections at once, each with one 32-byte text in flight: S4."""
    conns = p["conns"]
    peers = [Peer(p["host"], p["port"]) for _ in range(conns)]
    payloads = proto.text_payloads(16, 32)
    frames, expects = _prepare(None, p["mode"], proto.TEXT, payloads, False)
    size = len(expects[0])  # type: ignore[arg-type]
    total = len(frames)
    poller = select.epoll() if hasattr(select, "epoll") else None
    if poller is None:  # pragma: no cover - not Linux
        raise RuntimeError("S4 needs epoll (Linux)")
    slots: dict[int, _Slot] = {}
    for i, peer in enumerate(peers):
        if peer.leftover:
            raise FrameError(f"unexpected bytes after the handshake: {peer.leftover!r}")
        slot = _Slot()
        slot.peer, slot.sock = peer, peer.sock
        slot.buf = bytearray(size)
        slot.view = memoryview(slot.buf)
        slot.got = 0
        slot.index = i % total
        peer.sock.setblocking(False)
        fd = peer.sock.fileno()
        slots[fd] = slot
        poller.register(fd, select.EPOLLIN)
    count = 0
    latencies: list[float] = []
    meter = cpu_meter(p)
    start = perf()
    measure_from = start + p["warmup"]
    end = measure_from + p["duration"]
    for slot in slots.values():
        slot.t0 = perf()
        slot.sock.send(frames[slot.index])
    now = perf()
    while now < end:
        for fd, _ in poller.poll(0.5):
            slot = slots[fd]
            try:
                n = slot.sock.recv_into(slot.view[slot.got :])
            except BlockingIOError:
                continue
            if not n:
                raise FrameError("connection closed by the server")
            slot.got += n
            if slot.got < size:
                continue
            now = perf()
            if slot.buf != expects[slot.index]:
                raise FrameError(f"reply {count} differs from what was sent")
            if slot.t0 >= measure_from:
                if meter.started is None:
                    meter.start()
                count += 1
                latencies.append(now - slot.t0)
            slot.got = 0
            slot.index = (slot.index + 1) % total
            frame = frames[slot.index]
            slot.t0 = now
            if slot.sock.send(frame) != len(frame):  # pragma: no cover
                raise FrameError("socket buffer full with one small frame in flight")
        now = perf()
    elapsed = now - measure_from
    return {
        "count": count,
        "verified": count,
        "elapsed": elapsed,
        "rate": count / elapsed,
        **latency_stats(latencies),
        **meter.per_op(count),
    }, peers


def connections(p: dict[str, Any]):
    """Sequential connect + handshake + closing handshake + TCP close: S5, C3."""
    host, port = p["host"], p["port"]
    request = proto.handshake_request(host, port)
    close = proto.client_frame(proto.CLOSE, proto.CLOSE_1000)
    expect = (
        close
        if p["mode"] == "echo"
        else proto.server_frame(proto.CLOSE, proto.CLOSE_1000)
    )
    accept = proto.ACCEPT
    window = Window(p, cpu_meter(p))
    for t0 in window:
        sock = proto.connect_tcp(host, port)
        try:
            sock.sendall(request)
            head, rest = proto.read_head(sock)
            status, headers = proto.parse_response_head(head)
            if status != 101 or headers.get("sec-websocket-accept") != accept:
                raise FrameError(f"handshake failed: {head!r}")
            sock.sendall(close)
            data = rest
            while len(data) < len(expect):
                chunk = sock.recv(4096)
                if not chunk:
                    raise FrameError(f"closed before the close frame: {data!r}")
                data += chunk
            if data != expect:
                raise FrameError(f"unexpected close frame: {data!r}")
            # The server closes the TCP connection first (RFC 6455 §7.1.1).
            if sock.recv(4096):
                raise FrameError("data after the close frame")
        finally:
            sock.close()
        window.done(t0)
    return window.result(), []


def _proc_status(pid: int) -> tuple[int, int]:
    """VmRSS (KiB) and Threads of a process, from /proc/PID/status."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def idle(p: dict[str, Any]):
    """``conns`` idle connections: server memory and threads per connection: S6."""
    host, port, pid, conns = p["host"], p["port"], p["server_pid"], p["conns"]
    # Warm-up: one-time costs (imports, a watcher thread, caches) are not
    # per connection.
    for _ in range(10):
        Peer(host, port).close()

    def settle() -> tuple[int, int]:
        # Wait until the server's thread count holds still.
        last = _proc_status(pid)
        stable = 0
        deadline = perf() + 5
        while stable < 3 and perf() < deadline:
            time.sleep(0.1)
            now = _proc_status(pid)
            stable = stable + 1 if now[1] == last[1] else 0
            last = now
        time.sleep(0.2)
        return _proc_status(pid)

    rss0, threads0 = settle()
    peers = [Peer(host, port) for _ in range(conns)]
    rss1, threads1 = settle()
    return {
        "count": conns,
        "verified": conns,  # handshakes completed and checked
        "kib_per_conn": (rss1 - rss0) / conns,
        "threads_per_conn": (threads1 - threads0) / conns,
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "threads_before": threads0,
        "threads_after": threads1,
    }, peers


def run(p: dict[str, Any]):
    scenario = p["scenario"]
    if scenario in ("S1", "C1"):
        return pingpong(p, proto.TEXT, proto.text_payloads(16, 32), False)
    if scenario == "S1z":
        return pingpong(p, proto.TEXT, proto.text_payloads(16, 32), True)
    if scenario == "S2":
        return pipelined(p)
    if scenario in ("S3", "C2"):
        return pingpong(p, proto.BINARY, proto.binary_payloads(2, 2**20), False)
    if scenario == "S3z":
        return pingpong(p, proto.BINARY, proto.compressible_payloads(2, 2**20), True)
    if scenario == "S4":
        return concurrent(p)
    if scenario in ("S5", "C3"):
        return connections(p)
    if scenario == "S6":
        return idle(p)
    raise ValueError(f"unknown scenario {scenario}")


def main() -> None:
    child.setup()
    params = json.loads(sys.argv[1])
    peers: list[Peer] = []
    try:
        result, peers = run(params)
    except Exception as exc:
        child.emit({"error": f"{type(exc).__name__}: {exc}"})
    else:
        child.emit(result)
    child.wait_for_runner()
    for peer in peers:
        peer.sock.close()


if __name__ == "__main__":
    main()
