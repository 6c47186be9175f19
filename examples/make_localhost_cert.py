#!/usr/bin/env python
"""Create localhost.pem, a certificate for localhost, for the secure examples.

The certificate is signed by a throwaway certificate authority made by trustme
(pip install trustme), so it is only good for trying things out on this machine.
localhost.pem holds the private key, the certificate and the CA certificate:
the server loads the key and certificate, the client trusts the CA certificate.
(A real client would only get the CA certificate, never the server's key.)
"""

import argparse
import pathlib

import trustme

LOCALHOST_PEM = pathlib.Path(__file__).with_name("localhost.pem")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", default=LOCALHOST_PEM, type=pathlib.Path)
    args = parser.parse_args()

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    with args.path.open("wb") as pem:
        pem.write(cert.private_key_pem.bytes())
        for blob in cert.cert_chain_pems:
            pem.write(blob.bytes())
        pem.write(ca.cert_pem.bytes())
    print(f"wrote {args.path}")


if __name__ == "__main__":
    main()
