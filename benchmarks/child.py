"""Set-up shared by the processes the runner starts (servers, load, clients)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from typing import Any


def setup() -> None:
    """Make this process a well-behaved child of the runner.

    * Ctrl-C is the runner's business: it stops its children itself, so they
      ignore SIGINT (which the terminal sends to the whole process group).
    * SIGTERM ends the process at once, threads and all.
    * On Linux, the process dies with the runner even if the runner is killed.
    * File descriptors: as many as the hard limit allows (S6 holds 1,000
      connections, and some servers hold more than one descriptor each).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    parent = os.environ.get("WSSYNC_BENCH_PARENT")
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if parent is not None and os.getppid() != int(parent):
        os._exit(1)  # the runner is already gone
    with contextlib.suppress(Exception):
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 65536
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def emit(result: dict[str, Any]) -> None:
    """Hand the result to the runner: one JSON line on stdout."""
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def wait_for_runner() -> None:
    """Hold on (connections open) until the runner closes our stdin.

    The runner stops the server first, so that closing thousands of
    connections doesn't make the server log thousands of errors.
    """
    with contextlib.suppress(Exception):
        sys.stdin.read()
