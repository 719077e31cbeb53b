"""The demo's webhook receiver: `make run` starts it on 127.0.0.1 so the demo rules' webhook
action has somewhere to go, and a newcomer can watch deliveries arrive in var/webhooks.log.

Hand-written on the standard library's http.server on purpose: it only accepts a POST, logs its
headers (the Standard Webhooks id, timestamp and signature) and body as one JSON line, and
answers 204; a dependency would add nothing. Demo only: it binds to loopback.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

MAX_BODY = 1024 * 1024


def receiver_handler(log_path: Path) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY:
                self.send_error(413)
                return
            body = self.rfile.read(length).decode("utf-8", "replace")
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body
            line = {
                "received_at": datetime.now(UTC).isoformat(),
                "path": self.path,
                "webhook_id": self.headers.get("webhook-id"),
                "webhook_timestamp": self.headers.get("webhook-timestamp"),
                "webhook_signature": self.headers.get("webhook-signature"),
                "body": parsed,
            }
            with lock, log_path.open("a") as handle:
                handle.write(json.dumps(line) + "\n")
            self.send_response(204)
            self.end_headers()

        do_PUT = do_PATCH = do_POST

        def log_message(self, format, *args):
            pass  # the log file holds the deliveries; no access log on stderr

    return Handler


class Command(BaseCommand):
    help = "Receive the demo's webhooks on 127.0.0.1 and append each to var/webhooks.log (demo only)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.DEMO_WEBHOOK_PORT)
        parser.add_argument("--log", default=None, help="Where deliveries are appended (var/webhooks.log)")

    def handle(self, *args, port: int, log: str | None, **options):
        log_path = Path(log or Path(settings.BASE_DIR) / "var" / "webhooks.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        server = ThreadingHTTPServer(("127.0.0.1", port), receiver_handler(log_path))
        signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=server.shutdown).start())
        self.stdout.write(f"demo webhook receiver on http://127.0.0.1:{port}/ (pid {os.getpid()}), log {log_path}")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
