#!/usr/bin/env python
"""Producer pattern: a server that sends messages as they are produced."""

import argparse
import datetime
import time

import wssync

INTERVAL = 1.0  # seconds between two messages; --interval changes it


def producer():
    # Your business logic that produces the next message goes here: it may block
    # as long as it needs. This one tells the time every INTERVAL seconds.
    time.sleep(INTERVAL)
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def producer_handler(websocket):
    # send() raises ConnectionClosed when the client disconnects, which ends the
    # loop and the handler.
    while True:
        message = producer()
        websocket.send(message)


def main():
    global INTERVAL
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--interval", type=float, default=INTERVAL)
    args = parser.parse_args()
    INTERVAL = args.interval

    with wssync.serve(producer_handler, args.host, args.port) as server:
        print(f"listening on ws://{args.host}:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
