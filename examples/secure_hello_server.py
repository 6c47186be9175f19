#!/usr/bin/env python
"""Hello server over TLS (wss://). Run make_localhost_cert.py once first."""

import argparse
import pathlib
import ssl

import wssync

LOCALHOST_PEM = pathlib.Path(__file__).with_name("localhost.pem")


def hello(websocket):
    name = websocket.recv()
    print(f"< {name}", flush=True)

    greeting = f"Hello {name}!"
    websocket.send(greeting)
    print(f"> {greeting}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--cert", default=LOCALHOST_PEM, type=pathlib.Path)
    args = parser.parse_args()

    if not args.cert.exists():
        parser.exit(1, f"{args.cert} is missing: run make_localhost_cert.py first\n")

    # The server presents the certificate in localhost.pem.
    ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ssl_context.load_cert_chain(args.cert)

    with wssync.serve(hello, args.host, args.port, ssl=ssl_context) as server:
        print(f"listening on wss://{args.host}:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
