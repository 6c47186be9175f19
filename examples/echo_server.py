#!/usr/bin/env python
"""Echo server: sends every message it receives back to the client."""

import argparse

import wssync


def echo(websocket):
    # The loop ends quietly when the client closes the connection.
    for message in websocket:
        websocket.send(message)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    args = parser.parse_args()

    # serve() returns a server that is already bound; one thread per connection.
    with wssync.serve(echo, args.host, args.port) as server:
        print(f"listening on ws://{args.host}:{server.port}", flush=True)
        server.serve_forever()  # until Ctrl-C


if __name__ == "__main__":
    main()
