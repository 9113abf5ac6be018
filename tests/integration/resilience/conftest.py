"""A scriptable HTTP fault server on loopback, for the resilience integration tests.

``FaultServer`` answers each request with the next action of its script, then
with its default (200). Actions:

- an ``int`` status, or ``(status, {header: value})``, e.g. ``(429, {"Retry-After": "1"})``;
- ``"hang"``: read the request, never answer (until released or stopped);
- ``"reset"``: read the request, then abort the TCP connection (RST);
- ``"close"``: read the request, then close the connection without a response.

``stop()`` closes the listening socket and every open connection, so new
connections are refused; ``start()`` brings it back on the same port. Every request's arrival time
(``time.monotonic``) is recorded in ``arrivals``.
"""

from __future__ import annotations

import collections
import http.server
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

Action = int | str | tuple[int, dict[str, str]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        action = self.server.owner._next(self.path)
        if action == "hang":
            # Bounded: released when the test ends (stop()) or after 60 s at most.
            self.server.owner._release.wait(timeout=60)
            self.close_connection = True
            return
        if action == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.wfile.close()
            self.connection.close()  # linger 0: the kernel sends RST, not FIN
            self.close_connection = True
            return
        if action == "close":
            self.close_connection = True
            return
        status, headers = (action, {}) if isinstance(action, int) else action  # type: ignore[misc]
        body = f"status {status}\n".encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultServer

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner._lock:
            self.owner._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.owner._lock:
            self.owner._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A deliberately reset connection ends its handler with an I/O error; that is the
        # fault we scripted, not a bug. Anything else is reported as usual.
        import sys

        if isinstance(sys.exc_info()[1], ValueError | OSError):
            return
        super().handle_error(request, client_address)


class FaultServer:
    """A loopback HTTP server that fails on a script (see the module docstring)."""

    def __init__(self) -> None:
        self.port = 0
        self.default: Action = 200
        self.arrivals: list[float] = []
        self.paths: list[str] = []
        self._script: collections.deque[Action] = collections.deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hits(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def script(self, *actions: Action) -> None:
        """Append actions: the next requests get them, in order."""
        with self._lock:
            self._script.extend(actions)

    def _next(self, path: str) -> Action:
        with self._lock:
            self.arrivals.append(time.monotonic())
            self.paths.append(path)
            return self._script.popleft() if self._script else self.default

    def release_hangs(self) -> None:
        """Let every hanging request finish (closing its connection)."""
        self._release.set()

    def start(self) -> None:
        """Listen (again) on ``port`` (a free port the first time)."""
        assert self._server is None, "already running"
        self._release = threading.Event()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: new connections are refused. Hanging requests are released."""
        server, self._server = self._server, None
        if server is None:
            return
        self._release.set()
        server.shutdown()
        server.server_close()
        with self._lock:  # kept-alive connections die too: the dependency is gone
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=10)
            assert not self._thread.is_alive(), "fault server thread did not stop"


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
