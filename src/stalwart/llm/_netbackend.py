"""An asyncio-native network backend for httpcore, under the model clients' HTTP transport.

httpcore's default on asyncio goes through anyio: per read and write an anyio
cancel scope (a task lookup, a deadline check), and per request, when the pool
checks an idle connection, a rebuilt dict of socket attributes (a ``getpeername``)
and a ``poll`` of the socket. Profiling the helpdesk agent loop put ~28% of an agent
process's samples in the HTTP client, most of them in that layer. This backend is an
:class:`asyncio.Protocol` with its own buffer: a read takes what the event loop
already received, a deadline is one timer handle, and "is the idle connection
readable" (the server closed it, or sent what nobody asked) is a look at the buffer.

Errors are httpcore's (``ConnectError``, ``ConnectTimeout``, ``ReadError``,
``ReadTimeout``, ``WriteError``, ``WriteTimeout``), which httpx maps to its own as
for the anyio backend, so timeouts and error classification are unchanged.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from stalwart.llm._pool import Pool

__all__ = ["AsyncioBackend", "AsyncioTransport"]

_HIGH_WATER = 256 * 1024
"""Bytes buffered before the protocol stops reading from the socket (resumes under it)."""
_HOLD_BYTES = 64 * 1024
"""A connection holds at most this much written data before it sends it (see
:meth:`AsyncioStream.write`): a large request body still streams out as it is written."""

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Protocol(asyncio.Protocol):
    """One connection's receive buffer and the waiters of its reader and writer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.paused_reading = False
        self.paused_writing = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.write_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self.paused_reading = True
        _wake(self.read_waiter)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self.read_waiter)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self.read_waiter)
        _wake(self.write_waiter)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        _wake(self.write_waiter)

    async def readable(self, timeout: float | None) -> None:
        """Until data or the end arrives; TimeoutError past ``timeout`` seconds."""
        self.read_waiter = asyncio.get_running_loop().create_future()
        try:
            await _until(self.read_waiter, timeout)
        finally:
            self.read_waiter = None

    async def writable(self, timeout: float | None) -> None:
        """Until the transport's buffer drained; TimeoutError past ``timeout`` seconds."""
        self.write_waiter = asyncio.get_running_loop().create_future()
        try:
            await _until(self.write_waiter, timeout)
        finally:
            self.write_waiter = None


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


async def _until(waiter: asyncio.Future[None], timeout: float | None) -> None:
    """Await ``waiter`` under one timer handle (cheaper than a cancel scope per read)."""
    if timeout is None:  # no-deadline: httpx always passes one; None is httpcore's "none set"
        await waiter
        return
    timer = asyncio.get_running_loop().call_later(timeout, _expire, waiter)
    try:
        await waiter
    finally:
        timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    """A connection as httpcore reads and writes it."""

    def __init__(self, protocol: _Protocol, transport: asyncio.Transport) -> None:
        self._protocol = protocol
        self._transport = transport
        # Bytes written and not sent yet (see :meth:`write`).
        self._held: list[bytes] = []
        self._held_bytes = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._held:  # the request goes out before its answer is awaited
            await self._send_held(timeout)
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            try:
                await protocol.readable(timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout(f"no data within {timeout} s") from None
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]
            if protocol.paused_reading and len(protocol.buffer) <= _HIGH_WATER // 2:
                protocol.paused_reading = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""  # the peer closed its side: httpcore reads that as the end

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Hold ``buffer`` until the next :meth:`read` (or until ``_HOLD_BYTES`` are held),
        then send what is held in one write.

        httpcore writes a request's head and its body separately: two system calls and,
        with ``TCP_NODELAY``, two packets, each write also giving up the GIL to the
        process's other threads. Held, a request leaves in one (``bench/http_client.py``).
        httpcore reads the answer after every request it writes, so nothing is held
        past the moment it matters; a failure to send is raised from that read as the
        ``WriteError`` or ``WriteTimeout`` the write would have raised."""
        if not buffer:
            return
        protocol = self._protocol
        if protocol.error is not None or self._transport.is_closing():
            raise httpcore.WriteError(str(protocol.error or "the connection is closed"))
        self._held.append(buffer)
        self._held_bytes += len(buffer)
        if self._held_bytes >= _HOLD_BYTES:
            await self._send_held(timeout)

    async def _send_held(self, timeout: float | None) -> None:
        held = self._held
        buffer = held[0] if len(held) == 1 else b"".join(held)
        self._held = []
        self._held_bytes = 0
        protocol = self._protocol
        if protocol.error is not None or self._transport.is_closing():
            raise httpcore.WriteError(str(protocol.error or "the connection is closed"))
        self._transport.write(buffer)
        if protocol.paused_writing:
            try:
                await protocol.writable(timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout(f"could not write within {timeout} s") from None
            if protocol.error is not None:
                raise httpcore.WriteError(str(protocol.error))

    async def aclose(self) -> None:
        self._held = []  # a request never followed by a read was abandoned
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self._protocol,
                ssl_context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"TLS handshake not done within {timeout} s") from None
        except (OSError, ssl.SSLError) as exc:  # SSLError is an OSError; said for the reader
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        return AsyncioStream(self._protocol, transport)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # idle, yet data or the peer's close arrived: expired
            return bool(self._protocol.buffer) or self._protocol.eof
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens :class:`AsyncioStream` connections on the running event loop."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, host, port, local_addr=local
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(
                f"no connection to {host}:{port} within {timeout} s"
            ) from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(protocol, transport)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_Protocol, path)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {path} within {timeout} s") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(protocol, transport)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (its error mapping and response streams) over a connection pool
    on :class:`AsyncioBackend` whose cost per request does not grow with its connections
    (:class:`~stalwart.llm._pool.Pool`); HTTP/1.1, no proxy (a model client that needs
    one passes its own ``http=`` client)."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        retries: int = 0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        context = httpx.create_ssl_context(verify=verify)
        super().__init__(verify=context, limits=limits, retries=retries)
        self.pool = Pool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=retries,
            network_backend=AsyncioBackend(),
        )
        """The connection pool (its ``connections``, for tests and diagnostics)."""
        self._pool = self.pool  # type: ignore[assignment]  # httpx calls the same methods
