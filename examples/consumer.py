#!/usr/bin/env python
"""Consumer pattern: a server that handles every message a client sends."""

import argparse

import wssync


def consumer(message):
    # Your business logic for each incoming message goes here.
    print(f"< {message}", flush=True)


def consumer_handler(websocket):
    # Iteration ends when the client disconnects.
    for message in websocket:
        consumer(message)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args()

    with wssync.serve(consumer_handler, args.host, args.port) as server:
        print(f"listening on ws://{args.host}:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
