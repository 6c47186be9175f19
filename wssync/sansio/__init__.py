"""The protocol core of wssync: bytes in, events out; events in, bytes out.

Nothing in this package performs I/O, blocks, sleeps or reads a clock: it
never imports socket, ssl, select, selectors, threading, time or asyncio.
The blocking layer in :mod:`wssync.connection` drives it.
"""

from __future__ import annotations

__all__: list[str] = []
