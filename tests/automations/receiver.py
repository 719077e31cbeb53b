"""A tiny real HTTP receiver for webhook tests, the e2e test and the bench.

`Receiver()` listens on 127.0.0.1 (a free port) in a thread; `responses` is a list of status codes
to answer in turn (then `default`); every request is recorded with headers and raw body.
"""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, *, responses: list[int] | None = None, default: int = 200, delay: float = 0.0, port: int = 0):
        self.responses = list(responses or [])
        self.default = default
        self.delay = delay
        self.body = b"ok"
        self.redirect_to = ""
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    code = receiver.responses.pop(0) if receiver.responses else receiver.default
                    receiver.requests.append(
                        {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "code": code}
                    )
                if receiver.delay:
                    time.sleep(receiver.delay)
                payload = receiver.body
                self.send_response(code)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

            do_PUT = do_POST
            do_PATCH = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
