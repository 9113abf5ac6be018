"""A small TCP fault proxy: latency, resets and black holes on a loopback link.

The proxy listens on 127.0.0.1 and forwards every connection to one upstream
(host, port). Faults apply to both directions until cleared:

- ``latency_ms``: each chunk is held that long before it is forwarded;
- ``blackhole``: nothing is forwarded (new connections are accepted but not
  connected upstream) until the black hole ends -- what a dropped route looks
  like to TCP, which retransmits and delivers once the route is back; a client
  whose own deadline passes first gives up, as it would;
- ``reset``: new connections, and established ones on their next chunk, are
  closed with a TCP RST (``SO_LINGER`` 0).

Every wait inside has a deadline (``max_hold`` seconds), so a black hole that
nobody clears still ends. The proxy only binds loopback addresses.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import socket
import struct
import time

from stalwart.errors import ConfigError

__all__ = ["LOOPBACK_HOSTS", "FaultProxy", "ProxyFault"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The upstream hosts a :class:`FaultProxy` forwards to (it never leaves the machine)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyFault:
    """The fault in force on a :class:`FaultProxy` (the default: none)."""

    latency_ms: float = 0.0
    blackhole: bool = False
    reset: bool = False


class FaultProxy:
    """Forward ``127.0.0.1:port`` to ``upstream``, with faults (see the module docstring)."""

    def __init__(
        self, upstream_port: int, *, upstream_host: str = "127.0.0.1", max_hold: float = 30.0
    ) -> None:
        if upstream_host not in LOOPBACK_HOSTS:
            raise ConfigError("the fault proxy only forwards to loopback addresses")
        self.upstream = (upstream_host, upstream_port)
        self.max_hold = max_hold
        self.fault = ProxyFault()
        self.stats = {"connections": 0, "resets": 0, "held": 0, "bytes": 0}
        self.accepted: collections.deque[float] = collections.deque(maxlen=10_000)
        """When each connection was accepted (``time.monotonic()``, the latest 10 000): the
        spacing of a client's attempts, for checking its backoff."""
        self._open = asyncio.Event()
        self._open.set()
        # TCP by name (proto IPPROTO_TCP): asyncio then turns Nagle's algorithm off on the
        # connections it accepts, as on the node's API socket (server/_service.py), so a
        # client that keeps its connection open waits no delayed ACK (~40 ms) per answer
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        """Serve on the port bound at construction (known before start)."""
        self._server = await asyncio.start_server(self._accept, sock=self._sock)
        return self

    async def stop(self) -> None:
        self.clear()
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
        self._sock.close()

    def set(self, *, latency_ms: float = 0.0, blackhole: bool = False, reset: bool = False) -> None:
        """Put a fault in force (replacing the previous one)."""
        if latency_ms < 0:
            raise ConfigError("proxy latency_ms must be >= 0")
        self.fault = ProxyFault(latency_ms, blackhole, reset)
        if blackhole:
            self._open.clear()
        else:
            self._open.set()

    def clear(self) -> None:
        """No fault: forward at once."""
        self.set()

    # -- forwarding ---------------------------------------------------------------------------
    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def _hold(self) -> None:
        """Wait out a black hole (bounded by ``max_hold``)."""
        if not self._open.is_set():
            self.stats["held"] += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_hold):
                    await self._open.wait()

    def _rst(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        self.accepted.append(time.monotonic())
        if self.fault.reset:
            self.stats["resets"] += 1
            self._rst(writer)
            return
        await self._hold()
        try:
            async with asyncio.timeout(10.0):
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except (OSError, TimeoutError):
            self._rst(writer)
            return
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, writer)),
            asyncio.ensure_future(self._pump(up_reader, writer, up_writer)),
        ]
        try:
            # no-deadline: a connection lives as long as its peers keep it open
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        while True:
            # no-deadline: an idle keep-alive connection may wait for its next request
            chunk = await src.read(65536)
            if not chunk:
                with contextlib.suppress(OSError):
                    dst.write_eof()
                return
            await self._hold()
            fault = self.fault
            if fault.reset:
                self.stats["resets"] += 1
                self._rst(dst)
                self._rst(other)
                return
            if fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            self.stats["bytes"] += len(chunk)
            dst.write(chunk)
            async with asyncio.timeout(self.max_hold):
                await dst.drain()
