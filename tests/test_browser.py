"""The clock and counter examples, driven in headless Chromium.

Needs Debian's ``chromium`` package (/usr/bin/chromium) and Playwright for
Python (``pip install playwright``; never ``playwright install``: the system
browser is used, nothing is downloaded).
"""

from __future__ import annotations

import datetime
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT = 10  # seconds for anything expected at once


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install playwright"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    """Open pages in a fresh browser context, closed after the test.

    JavaScript errors and console errors of every page land in page.errors.
    """
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT * 1000)
    errors = []

    def new_page():
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda message: message.type == "error" and errors.append(message.text),
        )
        return page

    new_page.errors = errors
    try:
        yield new_page
    finally:
        context.close()


@pytest.fixture
def run_example():
    """Start an example server on a free port; stop it after the test."""
    started = []

    def run(script):
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        env["PYTHONUNBUFFERED"] = "1"
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        # Wait for the "listening on ..." line, in a thread so the wait is bounded.
        lines = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(proc.stdout.readline()))
        reader.start()
        started.append((proc, reader))
        try:
            line = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"{script} did not start in {TIMEOUT}s")
        match = re.search(r"listening on (http://[^/\s]+/)", line)
        assert match, f"{script} printed {line!r}"
        return match[1]

    yield run
    for proc, reader in started:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join()
        proc.stdout.close()


def test_clock(run_example, page):
    url = run_example("clock.py")
    clock = page()
    clock.goto(url)
    # Timestamps come at random intervals of up to 3 seconds.
    clock.locator("li").nth(2).wait_for(timeout=20_000)
    timestamps = clock.locator("li").all_text_contents()
    assert len(timestamps) >= 3
    times = [
        datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        for timestamp in timestamps
    ]
    assert times == sorted(times)
    assert all(time.utcoffset() == datetime.timedelta(0) for time in times)
    assert page.errors == []


def test_counter(run_example, page):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT * 1000)
    url = run_example("counter.py")
    first = page()
    first.goto(url)
    expect(first.locator(".state")).to_have_text("1 user online")
    expect(first.locator(".value")).to_have_text("0")

    second = page()
    second.goto(url)
    for counter in (first, second):
        expect(counter.locator(".state")).to_have_text("2 users online")
        expect(counter.locator(".value")).to_have_text("0")

    first.click(".plus")
    for counter in (first, second):
        expect(counter.locator(".value")).to_have_text("1")
        expect(counter.locator(".state")).to_have_text("2 users online")

    second.click(".minus")
    second.click(".minus")
    for counter in (first, second):
        expect(counter.locator(".value")).to_have_text("-1")

    second.close()
    expect(first.locator(".state")).to_have_text("1 user online")
    assert page.errors == []
