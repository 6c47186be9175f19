#!/usr/bin/env python
"""Clock: a web page showing the time, pushed by the server at random intervals.

Run it, then open http://127.0.0.1:5678/ in a browser. The page and the
WebSocket share the port: process_request answers plain HTTP requests.
"""

import argparse
import datetime
import random
import time

import wssync

PAGE = """\
<!DOCTYPE html>
<html>
  <head>
    <title>WebSocket clock</title>
    <link rel="icon" href="data:,">
  </head>
  <body>
    <ul id="messages"></ul>
    <script>
      // Connect back to the server that sent this page.
      const websocket = new WebSocket(`ws://${location.host}/`);
      const messages = document.getElementById("messages");
      websocket.onmessage = ({ data }) => {
        const message = document.createElement("li");
        message.textContent = data;
        messages.appendChild(message);
      };
    </script>
  </body>
</html>
"""


def show_time(websocket):
    # send() raises ConnectionClosed once the browser has left: that ends the loop.
    while True:
        now = datetime.datetime.now(datetime.timezone.utc)
        websocket.send(now.isoformat().replace("+00:00", "Z"))
        time.sleep(random.random() * 3)


def process_request(connection, request):
    # WebSocket handshakes carry "Upgrade: websocket": let them through.
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    if request.path != "/":
        return connection.respond(404, "Not Found\n")
    # Anything else gets the page: respond() builds a text/plain response...
    response = connection.respond(200, PAGE)
    # ... which becomes HTML by changing its Content-Type.
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5678, help="0 picks a free port")
    args = parser.parse_args()

    with wssync.serve(
        show_time, args.host, args.port, process_request=process_request
    ) as server:
        print(f"listening on http://{args.host}:{server.port}/", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
