"""The client libraries under test: ``python -m benchmarks.clients '<json params>'``.

C1 / C2 / C3 are the client side of S1 / S3 / S5, against the reference echo
server. Each library is used as its documentation shows, with its defaults,
except: compression off (the reference server doesn't negotiate it anyway;
``websocket-client`` has none) and ``max_size`` raised to 4 MiB where there is
one. Every reply is compared with what was sent.

Params (JSON): ``scenario``, ``library``, ``host``, ``port``, ``duration``,
``warmup``. Prints one ``RESULT <json>`` line.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Callable

from . import child, proto
from .loadgen import CpuMeter, Window

MAX_SIZE = 4 * 2**20


class Client:
    """One library's calls, behind one interface.

    ``open(uri)`` returns a context manager giving the connection and
    closing it on exit: how each library's documentation shows it
    (``websocket-client``'s connections aren't context managers, so
    :func:`contextlib.closing` wraps them).
    """

    def __init__(self, library: str) -> None:
        self.library = library
        if library == "wssync":
            import wssync

            def open_(uri: str) -> Any:
                return wssync.connect(uri, compression=None, max_size=MAX_SIZE)

            def closed_ok(ws: Any) -> bool:
                return ws.close_code == 1000

        elif library == "websockets":
            from websockets.sync.client import connect

            def open_(uri: str) -> Any:
                return connect(uri, compression=None, max_size=MAX_SIZE)

            def closed_ok(ws: Any) -> bool:
                return ws.close_code == 1000

        elif library == "websocket-client":
            import websocket

            def open_(uri: str) -> Any:
                return contextlib.closing(websocket.create_connection(uri))

            def closed_ok(ws: Any) -> bool:
                return not ws.connected

        else:
            raise ValueError(f"unknown library {library}")
        self.open: Callable[[str], Any] = open_
        self.closed_ok: Callable[[Any], bool] = closed_ok

    def binary_sender(self, ws: Any) -> Callable[[bytes], Any]:
        if self.library == "websocket-client":
            return ws.send_binary  # type: ignore[no-any-return]
        return ws.send  # type: ignore[no-any-return]


def pingpong(client: Client, p: dict[str, Any], payloads: list[Any], binary: bool):
    with client.open(f"ws://{p['host']}:{p['port']}/") as ws:
        return _pingpong(client, ws, p, payloads, binary)


def _pingpong(
    client: Client, ws: Any, p: dict[str, Any], payloads: list[Any], binary: bool
) -> dict[str, Any]:
    send = client.binary_sender(ws) if binary else ws.send
    recv = ws.recv
    sent_bytes = 0
    index, total = 0, len(payloads)
    window = Window(p, CpuMeter(None))
    for count, t0 in enumerate(window):
        payload = payloads[index]
        send(payload)
        reply = recv()
        if reply != payload:
            raise proto.FrameError(f"reply {count} differs from what was sent")
        if window.done(t0):
            sent_bytes += len(payload)
        index = (index + 1) % total
    return window.result(sent_bytes=sent_bytes)


def connections(client: Client, p: dict[str, Any]) -> dict[str, Any]:
    uri = f"ws://{p['host']}:{p['port']}/"
    window = Window(p, CpuMeter(None))
    for t0 in window:
        with client.open(uri) as ws:
            pass
        if not client.closed_ok(ws):
            raise proto.FrameError("the closing handshake didn't complete")
        window.done(t0)
    return window.result()


def run(p: dict[str, Any]) -> dict[str, Any]:
    client = Client(p["library"])
    scenario = p["scenario"]
    if scenario == "C1":
        texts = [t.decode() for t in proto.text_payloads(16, 32)]
        return pingpong(client, p, texts, binary=False)
    if scenario == "C2":
        return pingpong(client, p, proto.binary_payloads(2, 2**20), binary=True)
    if scenario == "C3":
        return connections(client, p)
    raise ValueError(f"unknown client scenario {scenario}")


def main() -> None:
    child.setup()
    params = json.loads(sys.argv[1])
    try:
        result = run(params)
    except Exception as exc:
        child.emit({"error": f"{type(exc).__name__}: {exc}"})
    else:
        child.emit(result)
    child.wait_for_runner()


if __name__ == "__main__":
    main()
