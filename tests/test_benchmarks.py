"""Smoke test of the benchmark harness (benchmarks/): it runs and verifies.

Runs ``python -m benchmarks --quick`` on two scenarios with tiny durations and
checks that the results are well formed and that every echoed payload was
verified. Timings are never asserted: machines are noisy.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.timeout(120)
def test_quick_run(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--scenarios",
            "S1z,C1",
            "--repeat",
            "1",
            "--duration",
            "0.1",
            "--warmup",
            "0.05",
            "--json",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "S1z" in run.stdout and "C1" in run.stdout  # the table

    report = json.loads(output.read_text())
    assert {"date", "cpus", "cpu", "python"} <= report["machine"].keys()
    results = report["results"]
    assert set(results) == {"S1z", "C1"}

    expected = {
        "S1z": {"wssync", "raw"}
        | ({"websockets"} if installed("websockets") else set()),
        "C1": {"wssync", "raw"}
        | ({"websockets"} if installed("websockets") else set())
        | ({"websocket-client"} if installed("websocket") else set()),
    }
    for name, entry in results.items():
        samples = entry["samples"]
        assert set(samples) == expected[name]
        for impl, runs in samples.items():
            assert len(runs) == 1
            result = runs[0]
            assert "error" not in result, (name, impl, result)
            # Every reply counted was compared byte for byte with what was sent.
            assert result["count"] > 0
            assert result["verified"] == result["count"]
            assert result["rate"] > 0
            assert 0 < result["p50_us"] <= result["p99_us"]
        medians = entry["summary"]["medians"]
        assert medians["wssync"]["rate"] > 0
        assert "anchor" in entry["summary"]["ratios"] or len(samples) == 2
        assert "raw" in entry["summary"]["ratios"]

    # permessage-deflate was negotiated without context takeover, as offered.
    for impl in ("wssync", "websockets"):
        if impl in results["S1z"]["samples"]:
            extensions = results["S1z"]["samples"][impl][0]["extensions"]
            assert "permessage-deflate" in extensions
            assert "server_no_context_takeover" in extensions


def test_ratio_shows_the_side_of_a_target_it_is_on() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.run import _ratio
    finally:
        sys.path.remove(str(ROOT))
    # 2 decimals, unless they would round a miss (or a pass) onto the target.
    assert _ratio(1.524, 2.0) == "1.52"
    assert _ratio(0.9985, 1.0) == "0.999"
    assert _ratio(1.0004, 1.0) == "1.000"
    assert _ratio(1.0, 1.0) == "1.00"
    assert _ratio(1.3, None) == "1.30"
