"""The servers, one per process: ``python -m benchmarks.servers IMPL``.

``IMPL`` is one of:

``wssync``
    :func:`wssync.serve` with an echo handler (a thread per connection).
``websockets``
    :func:`websockets.sync.server.serve` with the same handler.
``raw``
    Raw TCP, a thread per connection: answers the opening handshake, then
    reads each frame whole (its length from its header) into a reused buffer
    and writes the same bytes back, with no unmasking, no UTF-8 check and no
    compression. The same byte exchange as a WebSocket echo, with nothing
    else: the physical limit of a thread-per-connection server.
``reference``
    The fixed echo server of the client scenarios: one thread, a selector,
    unmasking, echo frame by frame, closing handshake. Lean, so that the
    client under test is what's measured.

The server listens on 127.0.0.1 on a free port and prints ``READY <port>``.
Both libraries run with their defaults (permessage-deflate enabled on the
servers, only used when a client offers it), except ``max_size``, raised to
4 MiB so that a 1 MiB message is nowhere near a limit.
"""

from __future__ import annotations

import collections
import selectors
import socket
import struct
import sys
import threading

from . import child, proto

HOST = "127.0.0.1"
MAX_SIZE = 4 * 2**20


def ready(port: int) -> None:
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


# ------------------------------------------------------------ the libraries


def serve_wssync() -> None:
    import wssync

    def echo(ws: wssync.ServerConnection) -> None:
        try:
            for message in ws:
                ws.send(message)
        except wssync.ConnectionClosed:
            pass

    server = wssync.serve(echo, HOST, 0, max_size=MAX_SIZE)
    ready(server.port)
    server.serve_forever()


def serve_websockets() -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve

    def echo(ws) -> None:  # type: ignore[no-untyped-def]
        try:
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass

    server = serve(echo, HOST, 0, max_size=MAX_SIZE)
    ready(server.socket.getsockname()[1])
    server.serve_forever()


# ------------------------------------------------------------------ raw TCP

#: The raw server's first buffer; it grows to fit the biggest frame seen.
RAW_BUFFER = 65536


def _frame_end(buf: bytearray, start: int, end: int) -> int:
    """Offset after the frame starting at ``buf[start]`` (may be beyond
    ``end``, the bytes read so far), or -1 if its header is incomplete."""
    if end - start < 2:
        return -1
    b1 = buf[start + 1]
    length = b1 & 0x7F
    pos = start + 2
    if length == 126:
        if end - start < 4:
            return -1
        (length,) = struct.unpack_from("!H", buf, pos)
        pos += 2
    elif length == 127:
        if end - start < 10:
            return -1
        (length,) = struct.unpack_from("!Q", buf, pos)
        pos += 8
    if b1 & 0x80:
        pos += 4
    return pos + length


def _raw_connection(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head, rest = proto.read_head(sock)
        sock.sendall(proto.handshake_response(head))
        if not rest:
            # An idle connection costs no buffer: wait for its first bytes.
            sock.recv(1, socket.MSG_PEEK)
        buf = bytearray(max(RAW_BUFFER, len(rest)))
        view = memoryview(buf)
        filled = len(rest)
        buf[:filled] = rest
        while True:
            # Every complete frame goes back at once, verbatim.
            pos = 0
            closing = False
            needed = 0
            while True:
                end = _frame_end(buf, pos, filled)
                if end < 0 or end > filled:
                    needed = end - pos
                    break
                if buf[pos] & 0x0F == proto.CLOSE:
                    closing = True
                    pos = end
                    break
                pos = end
            if pos:
                sock.sendall(view[:pos])
                if closing:
                    return
                if pos < filled:
                    buf[: filled - pos] = bytes(view[pos:filled])
                filled -= pos
            if needed > len(buf):
                # Grow once to fit a whole frame (reused after).
                view.release()
                grown = bytearray(needed)
                grown[:filled] = buf[:filled]
                buf, view = grown, memoryview(grown)
            n = sock.recv_into(view[filled:])
            if not n:
                return
            filled += n
    except (OSError, proto.FrameError):
        pass
    finally:
        sock.close()


def serve_raw() -> None:
    listener = socket.create_server((HOST, 0), backlog=1024)
    ready(listener.getsockname()[1])
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=_raw_connection, args=(sock,), daemon=True).start()


# ------------------------------------------------------- reference echo server


class _RefConnection:
    __slots__ = ("closing", "inbuf", "open", "out", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.open = False  # handshake done
        self.closing = False  # close the socket once the output is written
        self.out: collections.deque[memoryview] = collections.deque()


class ReferenceServer:
    """A single-threaded echo server for the client scenarios."""

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0), backlog=1024)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)

    def run(self) -> None:
        ready(self.listener.getsockname()[1])
        while True:
            for key, mask in self.selector.select():
                conn = key.data
                if conn is None:
                    self._accept()
                    continue
                if mask & selectors.EVENT_READ:
                    self._readable(conn)
                if mask & selectors.EVENT_WRITE and conn.sock.fileno() >= 0:
                    self._flush(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.selector.register(sock, selectors.EVENT_READ, _RefConnection(sock))

    def _drop(self, conn: _RefConnection) -> None:
        self.selector.unregister(conn.sock)
        conn.sock.close()

    def _readable(self, conn: _RefConnection) -> None:
        try:
            data = conn.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        buf = conn.inbuf
        buf += data
        if not conn.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            conn.out.append(memoryview(proto.handshake_response(bytes(buf[:end]))))
            del buf[: end + 4]
            conn.open = True
        pos = 0
        while not conn.closing:
            frame = proto.parse_frame(buf, pos)
            if frame is None:
                break
            fin, _, opcode, payload, pos = frame
            if opcode == proto.CLOSE:
                conn.out.append(
                    memoryview(proto.server_frame(proto.CLOSE, payload[:2]))
                )
                conn.closing = True
            elif opcode == proto.PING:
                conn.out.append(memoryview(proto.server_frame(proto.PONG, payload)))
            elif opcode != proto.PONG:
                head = proto.header(opcode, len(payload), masked=False, fin=fin)
                conn.out.append(memoryview(head))
                conn.out.append(memoryview(payload))
        if pos:
            del buf[:pos]
        self._flush(conn)

    def _flush(self, conn: _RefConnection) -> None:
        out = conn.out
        while out:
            try:
                sent = conn.sock.sendmsg(list(out)[:16])
            except BlockingIOError:
                break
            except OSError:
                self._drop(conn)
                return
            while sent:
                if sent >= len(out[0]):
                    sent -= len(out.popleft())
                else:
                    out[0] = out[0][sent:]
                    sent = 0
        if not out and conn.closing:
            self._drop(conn)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
        if self.selector.get_key(conn.sock).events != events:
            self.selector.modify(conn.sock, events, conn)


def serve_reference() -> None:
    ReferenceServer().run()


SERVERS = {
    "wssync": serve_wssync,
    "websockets": serve_websockets,
    "raw": serve_raw,
    "reference": serve_reference,
}


def main() -> None:
    child.setup()
    SERVERS[sys.argv[1]]()


if __name__ == "__main__":
    main()
