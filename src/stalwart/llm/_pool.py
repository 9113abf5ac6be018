"""A connection pool whose cost per request does not grow with its connections.

httpcore's ``AsyncConnectionPool`` re-plans the whole pool on every request and
every response's end: it walks every connection, and for each idle one counts the
idle connections again, so one request costs O(connections²) checks. An agent
process keeps up to ``max_tasks`` (1,000) model calls in flight, one connection
each: at 500 connections that walk was 54% of the process's CPU (py-spy, issue 19's
slow-model bench), and it capped the calls a process could keep in flight.

This pool keeps, per origin, its idle connections in a stack (the most recently
used on top: it is the least likely to have been closed by the server), counts the
connections open or opening, and queues the requests waiting for a free slot. A
request takes the top idle connection of its origin, or opens one below
``max_connections``, or (at the limit) closes the longest-idle connection of
another origin to open one, or waits in line, at most the ``pool`` timeout
(:class:`httpcore.PoolTimeout`). A response's end puts its connection back on its
stack (closed instead past ``max_keepalive_connections`` idle) and wakes the first
waiter. Each step is O(1) in the number of connections; an idle connection past
its keep-alive, or one the server closed (see ``_netbackend``), is dropped when a
request comes to it.

HTTP/1.1 only (one request per connection at a time), as the model clients use it.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, runtime_checkable

import httpcore
import httpx

__all__ = ["Pool"]

_Key = tuple[bytes, bytes, int]
_STALE = (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError)
"""How a request fails on a kept-alive connection the server has just closed."""


def _key(origin: httpcore.Origin) -> _Key:
    """An origin as a dict key (httpcore's ``Origin`` compares, but does not hash)."""
    return (origin.scheme, origin.host, origin.port)


class Pool:
    """HTTP/1.1 connections per origin, each request O(1) (see the module docstring)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int | None,
        max_keepalive_connections: int | None,
        keepalive_expiry: float | None,
        retries: int,
        network_backend: httpcore.AsyncNetworkBackend,
    ) -> None:
        self._ssl_context = ssl_context
        self._max = max_connections if max_connections is not None else float("inf")
        keep = max_keepalive_connections
        self._max_idle = keep if keep is not None else float("inf")
        self._keepalive_expiry = keepalive_expiry
        self._retries = retries
        self._backend = network_backend
        # per origin, its idle connections in the order they became idle (top: newest)
        self._idle: dict[_Key, dict[httpcore.AsyncHTTPConnection, None]] = {}
        self._idle_count = 0
        self._busy: set[httpcore.AsyncHTTPConnection] = set()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def connections(self) -> list[httpcore.AsyncHTTPConnection]:
        """Every connection, idle or serving (for tests and diagnostics)."""
        idle = [c for stack in self._idle.values() for c in stack]
        return idle + list(self._busy)

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        scheme = request.url.scheme
        if scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(
                f"the pool speaks http and https, not {scheme.decode()!r}"
            )
        timeouts = request.extensions.get("timeout", {})
        wait_for = timeouts.get("pool")
        origin = request.url.origin
        retried = False
        while True:
            connection, reused = await self._checkout(origin, wait_for)
            try:
                response = await connection.handle_async_request(request)
            except httpcore.ConnectionNotAvailable:
                # the kept-alive connection could not take it after all: another one
                await self._checkin(connection, origin)
                continue
            except _STALE:
                await self._checkin(connection, origin)  # closed by the failure
                # A kept-alive connection the server closed (its idle timeout) while this
                # request was on its way: it failed before any answer, so it is sent once
                # more on another connection, replayable bodies only. Counted as a failed
                # call, it opened the model's breaker under load (issue 19: 463 tickets
                # failed in one run). A fresh connection's failure is the server's: raised.
                if reused and not retried and isinstance(request.stream, httpx.ByteStream):
                    retried = True
                    continue
                raise
            except BaseException:
                await self._checkin(connection, origin)  # closed by the failure, or idle
                raise
            stream = response.stream
            assert isinstance(stream, _Body)  # an HTTP/1.1 connection's response body is
            return httpcore.Response(
                status=response.status,
                headers=response.headers,
                content=_Returned(stream, self, connection, origin),
                extensions=response.extensions,
            )

    async def _checkout(
        self, origin: httpcore.Origin, wait_for: float | None
    ) -> tuple[httpcore.AsyncHTTPConnection, bool]:
        """A connection for ``origin``, marked busy: kept-alive, new, or after a wait;
        and whether it was kept alive (it served a request before)."""
        while True:
            if self._closed:
                raise httpcore.ConnectError("the connection pool is closed")
            stale: list[httpcore.AsyncHTTPConnection] = []
            found = self._take_idle(origin, stale)
            if found is None and len(self._busy) + self._idle_count >= self._max:
                # at the limit: the longest-idle connection of another origin makes room
                evicted = self._take_oldest_idle()
                if evicted is not None:
                    stale.append(evicted)
            for connection in stale:
                await connection.aclose()
            reused = found is not None
            if found is None and len(self._busy) + self._idle_count < self._max:
                found = httpcore.AsyncHTTPConnection(
                    origin,
                    ssl_context=self._ssl_context,
                    keepalive_expiry=self._keepalive_expiry,
                    retries=self._retries,
                    network_backend=self._backend,
                )
            if found is not None:
                self._busy.add(found)
                return found, reused
            await self._wait(wait_for)

    def _take_idle(
        self, origin: httpcore.Origin, stale: list[httpcore.AsyncHTTPConnection]
    ) -> httpcore.AsyncHTTPConnection | None:
        """The newest usable idle connection of ``origin``; stale ones go to ``stale``."""
        stack = self._idle.get(_key(origin))
        while stack:
            connection = next(reversed(stack))
            del stack[connection]
            self._idle_count -= 1
            if connection.has_expired() or not connection.is_available():
                stale.append(connection)  # past its keep-alive, or the server closed it
                continue
            return connection
        return None

    def _take_oldest_idle(self) -> httpcore.AsyncHTTPConnection | None:
        for stack in self._idle.values():  # a handful of origins per process
            if stack:
                connection = next(iter(stack))
                del stack[connection]
                self._idle_count -= 1
                return connection
        return None

    async def _wait(self, wait_for: float | None) -> None:
        """Until a connection is given back or closed (PoolTimeout past ``wait_for``)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(wait_for):
                await waiter
        except TimeoutError:
            raise httpcore.PoolTimeout(
                f"no connection free within {wait_for} s (max_connections reached)"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._wake_one()  # woken, but leaving: the turn goes to the next in line
            raise
        finally:
            if not waiter.done():
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _checkin(
        self, connection: httpcore.AsyncHTTPConnection, origin: httpcore.Origin
    ) -> None:
        """A request on ``connection`` ended: keep it for the next one, or close it."""
        self._busy.discard(connection)
        if (
            not self._closed
            and connection.is_idle()
            and not connection.is_closed()
            and not connection.has_expired()
            and self._idle_count < self._max_idle
        ):
            self._idle.setdefault(_key(origin), {})[connection] = None
            self._idle_count += 1
            self._wake_one()
            return
        self._wake_one()  # its slot is free from now on
        if not connection.is_closed():
            # not reusable (mid-response after a failure, surplus, or the pool closed)
            await connection.aclose()

    async def aclose(self) -> None:
        self._closed = True
        every = self.connections
        self._idle.clear()
        self._idle_count = 0
        self._busy.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # they find the pool closed
        self._waiters.clear()
        for connection in every:
            await connection.aclose()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


@runtime_checkable
class _Body(Protocol):
    """An httpcore connection's response body: read in parts, closed when done."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class _Returned:
    """A response's body; its end (read through, or closed early) returns the connection."""

    def __init__(
        self,
        stream: _Body,
        pool: Pool,
        connection: httpcore.AsyncHTTPConnection,
        origin: httpcore.Origin,
    ) -> None:
        self._stream = stream
        self._pool = pool
        self._connection = connection
        self._origin = origin
        self._returned = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._returned:
            return
        self._returned = True
        try:
            await self._stream.aclose()  # the connection is idle again, or closed
        finally:
            await self._pool._checkin(self._connection, self._origin)
