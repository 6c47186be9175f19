"""Messages the interoperability tests exchange with other implementations."""

from __future__ import annotations

import os

#: 4 MiB: several reads and writes, and over most peers' default limits.
BIG = 4 * 2**20

TEXTS = [
    "",
    "Hello world!",
    "héllo wörld, ça va ?",
    "日本語のテキスト、中文、한국어",
    "emoji 🎉🚀👍🏽 and a clef 𝄞",
    "long " * 20_000 + "🎉",
]
TEXT_FRAGMENTS = ["frag", "mented ", "日本語 ", "🎉🚀", " text"]
BINARY_FRAGMENTS = [b"\x00\x01\x02", b"\xff" * 1000, os.urandom(70_000), b"end"]
BIG_PAYLOADS = [os.urandom(BIG), b"compressible JSON-like data, " * (BIG // 29)]
