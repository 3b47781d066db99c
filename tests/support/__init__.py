"""Helpers shared by the tests: polling with a deadline (never a bare sleep), a real HTTP
receiver for notifications, and paths to the shipped example configs.

What one family of tests shares lives in a module of this package, its fixtures in
``tests/conftest.py``: a test module never imports another test module."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # tests/support/__init__.py → the repository
EXAMPLES = ROOT / "docs" / "examples"


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; return that value or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


class Receiver:
    """A real HTTP server that records every POST body (a stand-in for a webhook endpoint).

    ``status`` may be set to make it answer errors, to test failover."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                with outer._lock:
                    outer.requests.append({"path": self.path, "body": body, "json": parsed,
                                           "headers": dict(self.headers), "at": time.time()})
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.requests)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
