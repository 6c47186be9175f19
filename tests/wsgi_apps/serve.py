"""Serve a WSGI application from this folder on 127.0.0.1 with a dev server.

``python serve.py SERVER MODULE:APP``, SERVER being ``werkzeug``,
``werkzeug-debug`` (behind werkzeug's debugger) or ``wsgiref``, APP an
application or ``factory()``. Prints ``PORT <port>`` once listening, then
serves until interrupted.
"""

from __future__ import annotations

import importlib
import sys


def main() -> None:
    server, target = sys.argv[1], sys.argv[2]
    module_name, _, attribute = target.partition(":")
    factory = attribute.endswith("()")
    app = getattr(importlib.import_module(module_name), attribute.rstrip("()") or "app")
    if factory:
        app = app()
    if server == "werkzeug-debug":
        # What `flask run --debug` serves: the app behind the debugger.
        from werkzeug.debug import DebuggedApplication

        app = DebuggedApplication(app, evalex=True)
        server = "werkzeug"
    if server == "werkzeug":
        from werkzeug.serving import make_server

        srv = make_server("127.0.0.1", 0, app, threaded=True)
        port = srv.port
    elif server == "wsgiref":
        import socketserver
        from wsgiref.simple_server import WSGIServer, make_server

        class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
            daemon_threads = True

        srv = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer)
        port = srv.server_port
    else:
        raise SystemExit(f"unknown server: {server}")
    print(f"PORT {port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:  # how the tests stop it
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
