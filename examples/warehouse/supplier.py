"""The supplier's ordering service: a small HTTP server on a real loopback socket.

``python -m examples.warehouse.supplier`` serves it on port 8765 (``--port``); tests and
the example's own runner start it in a thread with :func:`start`. It keeps every order
per ``Idempotency-Key`` and answers a repeated key with the first order (so a retry never
orders twice) and counts what it received (``GET /stats``).
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
from typing import Any

__all__ = ["Supplier", "start"]


class Supplier:
    """The service's state: orders per idempotency key, and every request received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.orders: dict[str, dict[str, Any]] = {}
        self.received = 0


def _handler(state: Supplier) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/stats":
                with state.lock:
                    self._reply(200, {"received": state.received, "orders": len(state.orders)})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            key = self.headers.get("Idempotency-Key") or ""
            try:
                order = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._reply(400, {"error": "the body is not JSON"})
                return
            if self.path != "/orders" or not key or not isinstance(order, dict):
                self._reply(400, {"error": "POST /orders with a JSON order and Idempotency-Key"})
                return
            with state.lock:
                state.received += 1
                first = state.orders.setdefault(
                    key, {"order_id": f"PO-{len(state.orders) + 1:05d}", **order}
                )
            self._reply(200, first)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return None

    return Handler


def start(port: int = 0) -> tuple[str, Supplier, http.server.ThreadingHTTPServer]:
    """Serve on 127.0.0.1:``port`` (0: a free one) in a daemon thread; returns its URL,
    its state and the server (``server.shutdown()`` stops it)."""
    state = Supplier()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _handler(state))
    threading.Thread(target=server.serve_forever, name="supplier", daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", state, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    url, _, server = start(args.port)
    print(f"supplier serving on {url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
