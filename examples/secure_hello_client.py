#!/usr/bin/env python
"""Hello client over TLS (wss://), trusting the certificate in localhost.pem."""

import argparse
import pathlib
import ssl

import wssync

LOCALHOST_PEM = pathlib.Path(__file__).with_name("localhost.pem")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("uri", nargs="?", default="wss://localhost:8765")
    parser.add_argument("--cert", default=LOCALHOST_PEM, type=pathlib.Path)
    args = parser.parse_args()

    # The server's certificate is not signed by a CA that Python trusts, so the
    # client needs a context that trusts it. Against a server with a regular
    # certificate, wss:// URIs just work (ssl.create_default_context() is used).
    ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ssl_context.load_verify_locations(args.cert)

    with wssync.connect(args.uri, ssl=ssl_context) as websocket:
        name = input("What's your name? ")
        websocket.send(name)
        print(f"> {name}")

        greeting = websocket.recv()
        print(f"< {greeting}")


if __name__ == "__main__":
    main()
