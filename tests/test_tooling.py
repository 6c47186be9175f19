"""The project's checks, run by the test suite so that one command runs them all.

Each check runs its tool as a subprocess of the interpreter running the tests
(``python -m ...``), from the root of the repository, so the configuration in
``pyproject.toml`` applies. The ``dev`` extra installs every tool; a test is
skipped, with the reason, only where its tool isn't installed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Generous bounds, far above what the tools need on a loaded 2-core machine
# (mypy --strict without a cache is the slowest, at tens of seconds), so that
# a hung tool fails the test instead of the whole run.
TOOL_TIMEOUT = 600


def run_tool(module: str, *args: str) -> None:
    """Run ``python -m module args`` at the root of the repository.

    Fails the test with the tool's output if it exits with a non-zero status.
    """
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    command = [sys.executable, "-m", module, *args]
    result = subprocess.run(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"python {' '.join(command[1:])} exited with status {result.returncode}:\n"
            f"{result.stdout}",
            pytrace=False,
        )


@pytest.mark.timeout(TOOL_TIMEOUT + 30)
def test_ruff_check() -> None:
    run_tool("ruff", "check", "--no-fix", ".")


@pytest.mark.timeout(TOOL_TIMEOUT + 30)
def test_ruff_format() -> None:
    run_tool("ruff", "format", "--check", "--diff", ".")


@pytest.mark.timeout(TOOL_TIMEOUT + 30)
def test_mypy_strict() -> None:
    run_tool("mypy", "--strict", "wssync")


@pytest.mark.timeout(TOOL_TIMEOUT + 30)
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    # -W turns warnings into errors; --keep-going reports all of them at once;
    # -E and a fresh output directory rule out a stale environment.
    run_tool(
        "sphinx",
        "-W",
        "--keep-going",
        "-E",
        "-q",
        "--no-color",
        "-b",
        "html",
        "-d",
        str(tmp_path / "doctrees"),
        "docs",
        str(tmp_path / "html"),
    )
