#!/usr/bin/env python
"""Hello client: asks for your name, sends it, prints the server's greeting."""

import argparse

import wssync


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("uri", nargs="?", default="ws://localhost:8765")
    args = parser.parse_args()

    with wssync.connect(args.uri) as websocket:
        name = input("What's your name? ")
        websocket.send(name)
        print(f"> {name}")

        greeting = websocket.recv()
        print(f"< {greeting}")


if __name__ == "__main__":
    main()
