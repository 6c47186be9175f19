#!/usr/bin/env python
"""Counter: a counter shared by everyone who has the page open.

Run it, then open http://127.0.0.1:6789/ in two browser tabs and click - and +.
Every change and the number of users online are pushed to every page.
"""

import argparse
import json
import logging
import pathlib
import threading

import wssync

logging.basicConfig()

PAGE = pathlib.Path(__file__).with_name("counter.html").read_text(encoding="utf-8")

# The state shared by every connection's thread. LOCK makes each update and the
# broadcast that announces it one step, so every page sees updates in the same
# order. broadcast() never blocks, so it is fine to call while holding the lock;
# send() could block on a client that stops reading, so it is never called there.
LOCK = threading.Lock()
USERS = set()
VALUE = 0


def users_event():
    return json.dumps({"type": "users", "count": len(USERS)})


def value_event():
    return json.dumps({"type": "value", "value": VALUE})


def register(websocket):
    with LOCK:
        USERS.add(websocket)
        wssync.broadcast([websocket], value_event())  # the newcomer gets the value
        wssync.broadcast(USERS, users_event())  # everyone gets the user count


def unregister(websocket):
    with LOCK:
        USERS.remove(websocket)
        wssync.broadcast(USERS, users_event())


def counter(websocket):
    global VALUE
    register(websocket)
    try:
        # Apply each action from this client and push the new value to everyone.
        for message in websocket:
            try:
                event = json.loads(message)
                action = event.get("action")
            except (ValueError, AttributeError):  # not JSON, or not an object
                event, action = message, None
            with LOCK:
                if action == "minus":
                    VALUE -= 1
                elif action == "plus":
                    VALUE += 1
                else:
                    logging.error("unsupported event: %s", event)
                    continue
                wssync.broadcast(USERS, value_event())
    finally:
        unregister(websocket)


def process_request(connection, request):
    # WebSocket handshakes go on; a plain HTTP request for / gets the page.
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    if request.path != "/":
        return connection.respond(404, "Not Found\n")
    response = connection.respond(200, PAGE)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6789, help="0 picks a free port")
    args = parser.parse_args()

    with wssync.serve(
        counter, args.host, args.port, process_request=process_request
    ) as server:
        print(f"listening on http://{args.host}:{server.port}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
