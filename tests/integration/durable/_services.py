"""A loopback "payment / e-mail" HTTP service that counts deliveries per Idempotency-Key.

``POST /pay`` deduplicates on the key (like payment APIs): a repeated key gets
the first response back and is not delivered again. ``POST /email`` does not
deduplicate: every request is a delivery. ``GET /email?key=K`` answers whether
an e-mail with that key was sent (what a reconcile hook asks).
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.deliveries: dict[tuple[str, str], int] = {}
        self.responses: dict[tuple[str, str], Any] = {}


def _handler(ledger: Ledger) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            kind = self.path.strip("/")
            key = self.headers.get("Idempotency-Key", "")
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            if kind not in ("pay", "email") or not key:
                self._reply(400, {"error": "bad request"})
                return
            with ledger.lock:
                k = (kind, key)
                ledger.requests[k] = ledger.requests.get(k, 0) + 1
                if kind == "pay" and k in ledger.responses:
                    response = ledger.responses[k]
                else:
                    ledger.deliveries[k] = ledger.deliveries.get(k, 0) + 1
                    response = {"receipt": f"{kind}-{body['amount']}", "ok": True}
                    ledger.responses[k] = response
            self._reply(200, response)

        def do_GET(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            key = urllib.parse.parse_qs(parsed.query).get("key", [""])[0]
            with ledger.lock:
                response = ledger.responses.get((parsed.path.strip("/"), key))
            self._reply(200, {"found": response is not None, "response": response})

    return Handler


@contextlib.contextmanager
def running_service() -> Iterator[tuple[str, Ledger]]:
    """Serve on 127.0.0.1, port 0; yields (base URL, ledger); stops and closes the port."""
    ledger = Ledger()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ledger))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-services", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", ledger
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
