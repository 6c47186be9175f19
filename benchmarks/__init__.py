"""wssync's benchmark harness: ``python -m benchmarks`` (see ``--help``).

wssync against ``websockets.sync`` (server and client), ``websocket-client``
(client) and raw TCP sockets doing the same byte exchange. Every server runs in
its own process and the load in another; the load generator and the reference
echo server are lean (raw sockets, precomputed frames) and verify every echoed
payload. docs/howto/benchmarks.rst tells how to run it and read its table.

Modules:

``run``
    The command: scenarios, process management, the table.
``proto``
    Just enough RFC 6455 / RFC 7692 for the lean peers: handshake bytes,
    frames, masking, deflate with fixed parameters.
``servers``
    The servers under test, one per process: wssync, websockets, raw TCP
    (a thread per connection) and the reference echo server (selectors).
``loadgen``
    The lean load generator for the server scenarios, also the raw-TCP
    client of the client scenarios.
``clients``
    The client libraries under test, for the client scenarios.
"""
