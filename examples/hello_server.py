#!/usr/bin/env python
"""Hello server: reads a name, answers with a greeting, closes the connection."""

import argparse

import wssync


def hello(websocket, path):
    # A handler written in the seed's style: with two parameters it also gets
    # the request path (unused here). wssync calls it in its own thread for each
    # connection and closes the connection when it returns.
    name = websocket.recv()
    print(f"< {name}", flush=True)

    greeting = f"Hello {name}!"
    websocket.send(greeting)
    print(f"> {greeting}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args()

    with wssync.serve(hello, args.host, args.port) as server:
        print(f"listening on ws://{args.host}:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
