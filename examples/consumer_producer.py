#!/usr/bin/env python
"""Both patterns on one connection: receive and send at the same time.

The consumer side runs in the connection's thread and the producer side in a
second thread. Whichever side ends first closes the connection, which ends the
other side too.
"""

import argparse
import threading
import time

import wssync

INTERVAL = 1.0  # seconds between two produced messages; --interval changes it
COUNT = None  # how many messages to produce before ending; None: no end


def consumer(message):
    # Your business logic for each incoming message.
    print(f"< {message}", flush=True)


def producer():
    # Your business logic producing messages: here, a tick every INTERVAL seconds,
    # COUNT times. When it is exhausted, the producer side ends.
    n = 0
    while COUNT is None or n < COUNT:
        time.sleep(INTERVAL)
        n += 1
        yield f"tick {n}"


def consumer_handler(websocket):
    # Ends when the client disconnects or when the producer side closes.
    for message in websocket:
        consumer(message)


def producer_handler(websocket):
    try:
        for message in producer():
            websocket.send(message)
    except wssync.ConnectionClosed:
        pass  # the client left, or the consumer side ended first
    finally:
        # If the producer ran out first, closing ends the consumer side.
        websocket.close()


def handler(websocket):
    producer_thread = threading.Thread(target=producer_handler, args=(websocket,))
    producer_thread.start()
    try:
        consumer_handler(websocket)
    finally:
        # If the consumer side ended first, closing makes the producer's next
        # send() raise ConnectionClosed. Joining waits for that (at most one
        # INTERVAL), so no thread outlives its connection.
        websocket.close()
        producer_thread.join()


def main():
    global INTERVAL, COUNT
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--interval", type=float, default=INTERVAL)
    parser.add_argument("--count", type=int, default=COUNT)
    args = parser.parse_args()
    INTERVAL, COUNT = args.interval, args.count

    with wssync.serve(handler, args.host, args.port) as server:
        print(f"listening on ws://{args.host}:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
