"""The benchmark command: ``python -m benchmarks`` (or ``python benchmarks/run.py``).

Runs every scenario against every implementation, each server in its own
process and the load (or the client under test) in another, interleaving the
implementations and repeating; prints a table of medians and of the ratios
wssync ÷ best anchor and wssync ÷ raw TCP, all from the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

ANCHORS = ("websockets", "websocket-client")


@dataclass
class Scenario:
    name: str
    side: str  # "server": servers under load; "client": clients against the reference
    title: str
    metric: str  # key of the result to compare
    unit: str
    target: float | None = None  # wssync ÷ best anchor
    raw_target: float | None = None  # wssync ÷ raw TCP
    lower_is_better: bool = False
    latency: bool = False  # show p50 / p99
    extra: list[tuple[str, str, float | None]] = field(default_factory=list)


SCENARIOS = [
    Scenario(
        "S1",
        "server",
        "1 conn, 32 B text ping-pong",
        "rate",
        "round trips/s",
        1.3,
        0.85,
        latency=True,
    ),
    Scenario(
        "S1z",
        "server",
        "S1 with permessage-deflate",
        "rate",
        "round trips/s",
        1.2,
        latency=True,
    ),
    Scenario(
        "S2", "server", "1 conn, 1 KiB binary, 64 in flight", "rate", "messages/s", 2.0
    ),
    Scenario("S3", "server", "1 conn, 1 MiB binary echo", "mb_per_s", "MB/s", 2.0),
    Scenario(
        "S3z", "server", "S3 with deflate, compressible data", "mb_per_s", "MB/s", 1.0
    ),
    Scenario(
        "S4",
        "server",
        "100 conns at once, 32 B round trips",
        "rate",
        "round trips/s",
        2.5,
        latency=True,
    ),
    Scenario(
        "S5", "server", "sequential connect+handshake+close", "rate", "conns/s", 1.4
    ),
    Scenario(
        "S6",
        "server",
        "idle conns: server memory",
        "kib_per_conn",
        "KiB/conn",
        lower_is_better=True,
        extra=[("threads_per_conn", "threads/conn", 1.0)],
    ),
    Scenario(
        "C1", "client", "client side of S1", "rate", "round trips/s", 1.3, latency=True
    ),
    Scenario("C2", "client", "client side of S3", "mb_per_s", "MB/s", 1.75),
    Scenario("C3", "client", "client side of S5", "rate", "conns/s", 1.3),
]
BY_NAME = {s.name: s for s in SCENARIOS}
S6_LIMIT_KIB = 30.0

SERVER_IMPLS = ["wssync", "websockets", "raw"]
CLIENT_IMPLS = ["wssync", "websockets", "websocket-client", "raw"]
IMPORTS = {
    "wssync": "wssync",
    "websockets": "websockets.sync",
    "websocket-client": "websocket",
    "raw": None,
}


def available(impl: str) -> bool:
    module = IMPORTS[impl]
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------ processes


class Child:
    """A child process whose stdout we read line by line, with deadlines."""

    live: set[Child] = set()
    #: The directory holding the ``wssync`` package to measure (``--wssync``).
    wssync_tree: Path = ROOT

    def __init__(self, module: str, *args: str) -> None:
        # Kept open while the process lives; closed in finish().
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        paths = [str(Child.wssync_tree), str(ROOT), os.environ.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
        env["WSSYNC_BENCH_PARENT"] = str(os.getpid())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            # Not ROOT: the current directory comes first on sys.path and
            # would shadow the wssync of --wssync.
            cwd=tempfile.gettempdir(),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        Child.live.add(self)
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_line(self, prefix: str, timeout: float) -> str:
        """The rest of the next stdout line starting with ``prefix``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(prefix):
                    return text[len(prefix) :].strip()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {prefix.strip()} line in time{self.tail()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    raise RuntimeError(
                        f"exited (code {self.proc.wait()}) before {prefix.strip()}"
                        f"{self.tail()}"
                    )
                self._buffer += data

    def tail(self, lines: int = 8) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip()
        if not text:
            return ""
        return "\n    " + "\n    ".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and wait for it."""
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.finish()

    def close_stdin_and_wait(self, timeout: float = 10) -> None:
        """Let a load generator close its connections and exit."""
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        self.stop()

    def finish(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.stderr.close()
        Child.live.discard(self)

    @classmethod
    def stop_all(cls) -> None:
        for c in list(cls.live):
            c.stop()


# ---------------------------------------------------------------- measuring


def measure(scenario: Scenario, impl: str, opts: argparse.Namespace) -> dict[str, Any]:
    """One measurement of one implementation in one scenario."""
    server_impl = impl if scenario.side == "server" else "reference"
    server = Child("benchmarks.servers", server_impl)
    load: Child | None = None
    try:
        port = int(server.read_line("READY", 30))
        params: dict[str, Any] = {
            "scenario": scenario.name,
            "host": HOST,
            "port": port,
            "mode": "echo" if server_impl == "raw" else "ws",
            "duration": opts.duration,
            "warmup": opts.warmup,
            "conns": opts.idle_conns if scenario.name == "S6" else 100,
            "server_pid": server.pid,
            "cpu_of": "server" if scenario.side == "server" else "self",
        }
        if scenario.side == "client" and impl != "raw":
            params["library"] = impl
            load = Child("benchmarks.clients", json.dumps(params))
        else:
            load = Child("benchmarks.loadgen", json.dumps(params))
        timeout = opts.warmup + opts.duration + 60
        result: dict[str, Any] = json.loads(load.read_line("RESULT", timeout))
        if "error" in result:
            result["error"] += load.tail() + server.tail()
        elif server.proc.poll() is not None:
            result = {"error": f"the server exited{server.tail()}"}
        return result
    except (TimeoutError, RuntimeError, ValueError) as exc:
        where = server if load is None else load
        return {"error": f"{exc}{'' if where.tail() in str(exc) else where.tail()}"}
    except BaseException:  # Ctrl-C: stop everything now
        if load is not None:
            load.stop()
        raise
    finally:
        server.stop()
        if load is not None:
            load.close_stdin_and_wait()


# ------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
    }
    with contextlib.suppress(OSError):
        info["load_average"] = round(os.getloadavg()[0], 2)
    versions = {}
    for dist in ("websockets", "websocket-client"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    versions["wssync"] = wssync_version(Child.wssync_tree)
    info["versions"] = versions
    return info


def wssync_version(tree: Path) -> str:
    """wssync's version and, in a git checkout, its commit."""
    text = "?"
    with contextlib.suppress(OSError):
        source = (tree / "wssync" / "version.py").read_text()
        for line in source.splitlines():
            if line.startswith("__version__"):
                text = line.split("=", 1)[1].strip().strip("\"'")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(tree)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "wssync"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        text += f" ({commit}{', with uncommitted changes' if dirty else ''})"
    return text


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(scenario: Scenario, samples: dict[str, list[dict[str, Any]]]):
    """Medians per implementation and the ratios of wssync's medians."""

    def values(impl: str, key: str) -> list[float]:
        return [r[key] for r in samples.get(impl, []) if "error" not in r and key in r]

    summary: dict[str, Any] = {"medians": {}, "ratios": {}, "checks": []}
    keys = [scenario.metric] + [k for k, _, _ in scenario.extra]
    if scenario.latency:
        keys += ["p50_us", "p99_us"]
    if scenario.name != "S6":
        keys.append("cpu_us")
    for impl in samples:
        summary["medians"][impl] = {k: median(values(impl, k)) for k in keys}
    med = {impl: m[scenario.metric] for impl, m in summary["medians"].items()}
    ours = med.get("wssync")
    anchors = {a: v for a, v in med.items() if a in ANCHORS and v is not None}
    if anchors:
        pick = min if scenario.lower_is_better else max
        best = pick(anchors, key=lambda a: anchors[a])
        summary["best_anchor"] = best
        if ours is not None and anchors[best]:
            summary["ratios"]["anchor"] = ours / anchors[best]
    if ours is not None and med.get("raw"):
        summary["ratios"]["raw"] = ours / med["raw"]
    if anchors and med.get("raw") and anchors[summary["best_anchor"]]:
        # Raw TCP does the same byte exchange with no WebSocket work: the
        # ratio no WebSocket implementation can pass on this machine.
        summary["ratios"]["ceiling"] = med["raw"] / anchors[summary["best_anchor"]]
    # CPU per operation: ratios of operations per CPU second (higher: better).
    cpu = {i: m.get("cpu_us") for i, m in summary["medians"].items()}
    if cpu.get("wssync"):
        cpu_anchors = {a: v for a, v in cpu.items() if a in ANCHORS and v}
        if cpu_anchors:
            best = min(cpu_anchors, key=lambda a: cpu_anchors[a])
            summary["cpu_best_anchor"] = best
            summary["ratios"]["cpu_anchor"] = cpu_anchors[best] / cpu["wssync"]
        if cpu.get("raw"):
            summary["ratios"]["cpu_raw"] = cpu["raw"] / cpu["wssync"]
    # Targets.
    checks = summary["checks"]
    if scenario.target is not None:
        ratio = summary["ratios"].get("anchor")
        label = f"≥{scenario.target:g}x best anchor"
        ceiling = summary["ratios"].get("ceiling")
        if ceiling is not None and ceiling < scenario.target:
            label += f" (above raw TCP's {ceiling:.2f}x here)"
        checks.append((label, ratio is not None and ratio >= scenario.target))
    if scenario.raw_target is not None:
        ratio = summary["ratios"].get("raw")
        checks.append(
            (
                f"≥{scenario.raw_target:g}x raw",
                ratio is not None and ratio >= scenario.raw_target,
            )
        )
    if scenario.name == "S6":
        checks.append(
            (f"≤{S6_LIMIT_KIB:g} KiB", ours is not None and ours <= S6_LIMIT_KIB)
        )
        threads = summary["medians"].get("wssync", {}).get("threads_per_conn")
        checks.append(("≤1 thread", threads is not None and threads <= 1.0 + 1e-9))
    return summary


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in ("threads/conn",):
        return f"{value:.2f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread(vals: list[float]) -> str:
    if len(vals) < 2 or not statistics.median(vals):
        return ""
    return f"±{(max(vals) - min(vals)) / 2 / statistics.median(vals) * 100:.0f}%"


IMPL_ORDER = ["wssync", "websockets", "websocket-client", "raw"]
IMPL_NAMES = {
    "wssync": "wssync",
    "websockets": "websockets.sync",
    "websocket-client": "websocket-client",
    "raw": "raw TCP",
}


def _cell(scenario: Scenario, entry: dict[str, Any], impl: str, key: str) -> str:
    samples = entry["samples"]
    if impl not in samples:
        return "—"
    if samples[impl] and all("error" in r for r in samples[impl]):
        return "error"
    unit = scenario.unit if key == scenario.metric else key
    text = fmt(entry["summary"]["medians"][impl].get(key), unit)
    if impl == "wssync" and key == scenario.metric:
        wobble = spread([r[key] for r in samples[impl] if key in r])
        text += f" {wobble}" if wobble else ""
    return text


def _latency(entry: dict[str, Any], impl: str) -> str:
    med = entry["summary"]["medians"].get(impl)
    if med is None or med.get("p50_us") is None:
        return "—"
    return f"{fmt(med['p50_us'])} / {fmt(med['p99_us'])}"


def _ratio(value: float, target: float | None) -> str:
    """A ratio with 2 decimals, or 3 where 2 would round it onto its target."""
    text = f"{value:.2f}"
    if target is not None and float(text) == target and value != target:
        text = f"{value:.3f}"
    return text


def _rows(scenario: Scenario, entry: dict[str, Any]) -> list[list[str]]:
    summary = entry["summary"]
    med = summary["medians"]
    ratios = summary["ratios"]
    names = IMPL_NAMES
    best = summary.get("best_anchor")
    anchor = (
        f"{_ratio(ratios['anchor'], scenario.target)} {names[best]}"
        if "anchor" in ratios
        else "—"
    )
    raw = f"{ratios['raw']:.2f}" if "raw" in ratios else "—"
    target = " ".join(
        f"{label} {'ok' if ok else 'MISSED'}" for label, ok in summary["checks"]
    )
    cells = [_cell(scenario, entry, i, scenario.metric) for i in IMPL_ORDER]
    rows = [[scenario.name, scenario.unit, *cells, anchor, raw, target]]
    if scenario.latency:
        latencies = [_latency(entry, i) for i in IMPL_ORDER]
        rows.append(["", "p50 / p99 µs", *latencies, "", "", ""])
    if "cpu_anchor" in ratios or "cpu_raw" in ratios:
        who = "server" if scenario.side == "server" else "client"
        best_cpu = summary.get("cpu_best_anchor")
        cpu = [fmt(med[i].get("cpu_us")) if i in med else "—" for i in IMPL_ORDER]
        cpu_anchor = (
            f"{ratios['cpu_anchor']:.2f} {names[best_cpu]}"
            if "cpu_anchor" in ratios
            else ""
        )
        cpu_raw = f"{ratios['cpu_raw']:.2f}" if "cpu_raw" in ratios else ""
        rows.append(["", f"{who} CPU µs/op", *cpu, cpu_anchor, cpu_raw, ""])
    for key, unit, _ in scenario.extra:
        extra_ratio = ""
        ours = med.get("wssync", {}).get(key)
        ws = med.get("websockets", {}).get(key)
        if ours is not None and ws:
            extra_ratio = f"{ours / ws:.2f} websockets.sync"
        cells = [_cell(scenario, entry, i, key) for i in IMPL_ORDER]
        rows.append(["", unit, *cells, extra_ratio, "", ""])
    return rows


def table(
    info: dict[str, Any], results: dict[str, Any], opts: argparse.Namespace
) -> str:
    header = [
        "",
        "measure",
        *[IMPL_NAMES[i] for i in IMPL_ORDER],
        "÷best anchor",
        "÷raw",
        "target",
    ]
    rows: list[list[str]] = []
    for name, entry in results.items():
        rows.extend(_rows(BY_NAME[name], entry))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"wssync benchmarks, {info['date']}: {info['cpus']} CPUs, {info['cpu']}, "
        f"{info['python']}, {info['os']}, load average {info.get('load_average')}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
        f"median of {opts.repeat} run(s) of {opts.duration:g} s after "
        f"{opts.warmup:g} s of warm-up, implementations interleaved; "
        "±: half the spread of wssync's runs",
        "ratios: wssync ÷ best anchor and ÷ raw TCP (medians); CPU rows: "
        "operations per CPU second, wssync ÷ the other (higher is better); "
        "KiB/conn, threads/conn: lower is better",
        "a target marked 'above raw TCP' asks more of wssync than raw TCP "
        "(the same bytes, no WebSocket work) achieves over that anchor here",
        "",
        "  ".join(h.ljust(w) for h, w in zip(header, widths)),
    ]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="wssync vs websockets.sync, websocket-client and raw TCP.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one short run of everything (under a minute)",
    )
    parser.add_argument(
        "--scenarios", default="", help="comma-separated, e.g. S1,S3z,C2 (default: all)"
    )
    parser.add_argument(
        "--impls",
        default="",
        help="comma-separated subset of " + ",".join(CLIENT_IMPLS),
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per implementation and scenario (default 3; 1 with --quick)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds measured per run (default 1; 0.3 with --quick)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of warm-up per run (default 0.3; 0.1 with --quick)",
    )
    parser.add_argument(
        "--idle-conns",
        type=int,
        default=None,
        help="S6 connections (default 1000; 200 with --quick)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write every sample and summary as JSON"
    )
    parser.add_argument(
        "--wssync",
        metavar="DIR",
        type=Path,
        default=ROOT,
        help="measure the wssync package in DIR (e.g. a git worktree of another "
        "commit) instead of this checkout's",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    opts = parser.parse_args(argv)
    opts.repeat = opts.repeat or (1 if opts.quick else 3)
    opts.duration = opts.duration or (0.3 if opts.quick else 1.0)
    opts.warmup = (
        opts.warmup if opts.warmup is not None else (0.1 if opts.quick else 0.3)
    )
    opts.idle_conns = opts.idle_conns or (200 if opts.quick else 1000)
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.list:
        for s in SCENARIOS:
            print(f"{s.name:4} {s.title} ({s.unit})")
        return 0
    names = [n.strip() for n in opts.scenarios.split(",") if n.strip()] or list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    wanted = [i.strip() for i in opts.impls.split(",") if i.strip()] or CLIENT_IMPLS
    missing = [i for i in wanted if i in IMPORTS and not available(i)]
    for impl in missing:
        print(f"note: {impl} is not installed; skipped", file=sys.stderr)

    def impls_for(scenario: Scenario) -> list[str]:
        pool = SERVER_IMPLS if scenario.side == "server" else CLIENT_IMPLS
        return [i for i in pool if i in wanted and i not in missing]

    if not (opts.wssync / "wssync" / "__init__.py").is_file():
        print(f"no wssync package in {opts.wssync}", file=sys.stderr)
        return 2
    Child.wssync_tree = opts.wssync.resolve()
    info = machine()
    results: dict[str, Any] = {
        n: {"samples": {i: [] for i in impls_for(BY_NAME[n])}} for n in names
    }

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    failed = False
    try:
        for rep in range(opts.repeat):
            for name in names:
                scenario = BY_NAME[name]
                impls = impls_for(scenario)
                # Interleave: a different implementation goes first each round.
                shift = rep % len(impls) if impls else 0
                for impl in impls[shift:] + impls[:shift]:
                    result = measure(scenario, impl, opts)
                    where = f"[{rep + 1}/{opts.repeat}] {name} {impl}:"
                    results[name]["samples"][impl].append(result)
                    if "error" in result:
                        failed = True
                        log(f"{where} ERROR {result['error']}")
                    else:
                        value = result.get(scenario.metric)
                        log(f"{where} {fmt(value)} {scenario.unit}")
    except KeyboardInterrupt:
        log("interrupted; stopping every process")
        Child.stop_all()
        return 130
    finally:
        Child.stop_all()
        signal.signal(signal.SIGTERM, previous)
    for name in names:
        results[name]["summary"] = summarize(BY_NAME[name], results[name]["samples"])
    with contextlib.suppress(OSError):
        info["load_average_end"] = round(os.getloadavg()[0], 2)
    info["seconds"] = round(time.monotonic() - started, 1)
    print(table(info, results, opts))
    print(
        f"\n{info['seconds']} s in all; load average at the end "
        f"{info.get('load_average_end')}"
    )
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(
                {"machine": info, "options": vars(opts), "results": results},
                f,
                indent=1,
                default=str,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        # python benchmarks/run.py
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
