#!/usr/bin/env python
"""Registration pattern: keep track of the clients connected right now.

This keeps them in memory, which only works within a single process; across
processes, subscribe each handler to a message broker instead.
"""

import argparse
import threading

import wssync

# Handlers run in one thread per connection: LOCK guards CONNECTED.
LOCK = threading.Lock()
CONNECTED = set()


def handler(websocket):
    # Register.
    with LOCK:
        CONNECTED.add(websocket)
        print(f"{len(CONNECTED)} connected", flush=True)
        # Broadcast a message to all connected clients. broadcast() never
        # blocks, even on a client that stopped reading.
        wssync.broadcast(CONNECTED, "Hello!")
    try:
        # The rest of the connection's life: here, wait until the client leaves.
        for _message in websocket:
            pass
    finally:
        # Unregister.
        with LOCK:
            CONNECTED.remove(websocket)
            print(f"{len(CONNECTED)} connected", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args()

    with wssync.serve(handler, args.host, args.port) as server:
        print(f"listening on ws://{args.host}:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
