#!/usr/bin/env python
"""Echo client: sends "Hello world!" and prints the echo."""

import argparse

import wssync


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("uri", nargs="?", default="ws://localhost:8765")
    args = parser.parse_args()

    # The with block closes the connection cleanly on exit.
    with wssync.connect(args.uri) as websocket:
        websocket.send("Hello world!")
        print("> Hello world!")
        message = websocket.recv()
        print(f"< {message}")


if __name__ == "__main__":
    main()
