"""Connections over socket pairs, made the way serve() and connect() make them."""

from __future__ import annotations

import socket
from typing import Any

from wssync.client import ClientConnection
from wssync.connection import Connection
from wssync.sansio.protocol import Protocol, Side


def make_connection(sock: socket.socket, side: Side, **options: Any) -> Connection:
    """A started connection over ``sock``, as a client or as a server.

    ``max_size`` goes to the protocol, ``blocking_reads`` (default ``True``)
    says whether a thread other than the main one waits for messages in
    recv() itself, as connections made by serve() and connect() do; the
    other options go to the connection, with keepalive off and a 2 s
    ``close_timeout`` by default.
    """
    protocol = Protocol(side, max_size=options.pop("max_size", 2**20))
    blocking_reads = bool(options.pop("blocking_reads", True))
    options.setdefault("ping_interval", None)
    options.setdefault("close_timeout", 2)
    cls = ClientConnection if side is Side.CLIENT else Connection
    connection = cls(sock, protocol, **options)
    connection._blocking_reads = blocking_reads
    connection._start()
    return connection
