"""The interactive client: ``python -m wssync ws://host:port/path``.

Lines typed are sent as text messages; messages received are printed. End
of input (Ctrl-D) closes the connection cleanly; so does Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .client import ClientConnection, connect
from .exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake
from .version import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wssync",
        description="Interactive WebSocket client: lines typed are sent, "
        "messages received are printed; Ctrl-D closes the connection.",
    )
    parser.add_argument("uri", help="ws:// or wss:// URI")
    parser.add_argument("--origin", help="Origin header to send")
    parser.add_argument(
        "--subprotocol",
        action="append",
        dest="subprotocols",
        metavar="NAME",
        help="offer this subprotocol (repeatable)",
    )
    parser.add_argument(
        "--header",
        action="append",
        dest="headers",
        default=[],
        metavar="'NAME: VALUE'",
        help="add this request header (repeatable)",
    )
    parser.add_argument(
        "--no-compression", action="store_true", help="don't offer permessage-deflate"
    )
    parser.add_argument(
        "--no-proxy",
        action="store_true",
        help="ignore HTTP(S)_PROXY from the environment",
    )
    parser.add_argument("--version", action="version", version=f"wssync {__version__}")
    return parser


def _print_messages(connection: ClientConnection, main_thread_id: int) -> None:
    """Print what arrives; when the server closes, end the main thread's input."""
    try:
        for message in connection:
            text = message if isinstance(message, str) else f"(binary) {message.hex()}"
            print(f"< {text}", flush=True)
    except ConnectionClosed:
        pass
    reason = connection.close_reason or ""
    print(f"Connection closed: {connection.close_code} {reason}".rstrip(), flush=True)
    if hasattr(signal, "pthread_kill"):
        # The main thread is blocked reading the terminal: interrupt it.
        signal.pthread_kill(main_thread_id, signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the interactive client; return the exit status."""
    args = _parser().parse_args(argv)
    headers = []
    for header in args.headers:
        name, sep, value = header.partition(":")
        if not sep:
            print(f"invalid header (expected 'Name: value'): {header}", file=sys.stderr)
            return 2
        headers.append((name.strip(), value.strip()))
    try:
        connection = connect(
            args.uri,
            origin=args.origin,
            subprotocols=args.subprotocols,
            additional_headers=headers,
            compression=None if args.no_compression else "deflate",
            proxy=None if args.no_proxy else True,
        )
    except (OSError, InvalidHandshake, ValueError) as exc:
        print(f"Failed to connect to {args.uri}: {exc}", file=sys.stderr)
        return 1
    print(f"Connected to {args.uri}. Ctrl-D to close.", flush=True)
    printer = threading.Thread(
        target=_print_messages,
        args=(connection, threading.get_ident()),
        name="wssync-cli-printer",
        daemon=True,
    )
    try:
        # Started inside the try: a server that closes at once makes the
        # printer interrupt this thread as soon as it runs, possibly before
        # start() returns here.
        printer.start()
        for line in sys.stdin:
            connection.send(line.rstrip("\r\n"))
    except (KeyboardInterrupt, ConnectionClosedOK):
        pass
    except ConnectionClosed as exc:
        print(f"Connection closed: {exc}", file=sys.stderr)
    # The printer interrupts the main thread once the connection ends; past
    # this point that interruption has nothing left to stop.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        connection.close()
        printer.join(5)
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
