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
(:class:`httpx.PoolTimeout`). A response's end puts its connection back on its
stack (closed instead past ``max_keepalive_connections`` idle) and wakes the first
waiter. Each step is O(1) in the number of connections; an idle connection past
its keep-alive, or one the server closed (see ``_h1``), is dropped when a
request comes to it.

HTTP/1.1 only (one request per connection at a time), as the model clients use it;
its connections are :class:`~stalwart.llm._h1.Connection` s.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl

import httpx

from stalwart.llm._h1 import Connection, Stale

__all__ = ["Key", "Pool"]

Key = tuple[str, str, int]
"""An origin: scheme, host, port."""


class Pool:
    """HTTP/1.1 connections per origin, each request O(1) (see the module docstring)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool,
        max_connections: int | None,
        max_keepalive_connections: int | None,
        keepalive_expiry: float | None,
        retries: int,
    ) -> None:
        self._verify = verify
        self._ssl_context = verify if isinstance(verify, ssl.SSLContext) else None
        self._max = max_connections if max_connections is not None else float("inf")
        keep = max_keepalive_connections
        self._max_idle = keep if keep is not None else float("inf")
        self._keepalive_expiry = keepalive_expiry
        self._retries = retries
        # per origin, its idle connections in the order they became idle (top: newest)
        self._idle: dict[Key, dict[Connection, None]] = {}
        self._idle_count = 0
        self._busy: set[Connection] = set()
        self._opening = 0  # connections being opened (they count against the limit)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    @property
    def connections(self) -> list[Connection]:
        """Every connection, idle or serving (for tests and diagnostics)."""
        idle = [c for stack in self._idle.values() for c in stack]
        return idle + list(self._busy)

    def has_expired(self, connection: Connection) -> bool:
        """Whether ``connection`` would be dropped rather than reused (closed by the
        server, or idle past the keep-alive expiry)."""
        return connection.has_expired(self._keepalive_expiry)

    async def exchange(
        self,
        key: Key,
        request: bytes,
        *,
        connect: float | None,
        read: float | None,
        write: float | None,
        pool: float | None,
        head_only: bool = False,
    ) -> Connection:
        """Send ``request`` (its head and body, whole) to ``key``'s origin and read the
        answer's head: the connection, busy until :meth:`release` d, reads the body.

        A kept-alive connection the server closed (its idle timeout) while the request
        was on its way fails before any byte of the answer: the request is sent once more
        on another connection. Counted as a failed call, it opened the model's breaker
        under load (issue 19: 463 tickets failed in one run). A fresh connection's
        failure is the server's: raised."""
        retried = False
        while True:
            connection, reused = await self._checkout(key, connect, pool)
            try:
                await connection.send(request, write)
                await connection.read_head(read, head_request=head_only)
            except Stale:
                self.release(connection)  # closed: it never answered
                if reused and not retried:
                    retried = True
                    continue
                raise
            except BaseException:
                self.release(connection)  # closed by the failure (mid-exchange)
                raise
            return connection

    async def _checkout(
        self, key: Key, connect: float | None, wait_for: float | None
    ) -> tuple[Connection, bool]:
        """A connection for ``key``, marked busy: kept-alive, new, or after a wait;
        and whether it was kept alive (it served a request before)."""
        while True:
            if self._closed:
                raise httpx.ConnectError("the connection pool is closed")
            found = self._take_idle(key)
            if found is not None:
                self._busy.add(found)
                return found, True
            if self._count() >= self._max:
                # at the limit: the longest-idle connection of another origin makes room
                evicted = self._take_oldest_idle()
                if evicted is not None:
                    evicted.close()
            if self._count() < self._max:
                self._opening += 1
                try:
                    connection = await self._connect(key, connect)
                except BaseException:
                    self._opening -= 1
                    self._wake_one()  # the slot it held is free
                    raise
                self._opening -= 1
                if self._closed:
                    connection.close()
                    raise httpx.ConnectError("the connection pool is closed")
                self._busy.add(connection)
                return connection, False
            await self._wait(wait_for)

    def _count(self) -> int:
        return len(self._busy) + self._idle_count + self._opening

    async def _connect(self, key: Key, timeout: float | None) -> Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        context = self._tls() if scheme == "https" else None
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(timeout):
                    transport, connection = await loop.create_connection(
                        lambda: Connection(key, loop),
                        host,
                        port,
                        ssl=context,
                        server_hostname=host if context is not None else None,
                    )
            except TimeoutError:
                raise httpx.ConnectTimeout(
                    f"no connection to {host}:{port} within {timeout} s"
                ) from None
            except OSError as exc:  # refused, unreachable, TLS (SSLError is an OSError)
                if attempt < self._retries:
                    attempt += 1
                    await asyncio.sleep(0.5 * 2 ** (attempt - 1))
                    continue
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection

    def _tls(self) -> ssl.SSLContext:
        """The TLS context, made when the first https connection is opened: loading the
        system's CAs takes ~30 ms of CPU, once per model client at every agent process's
        start (four in the helpdesk's resolver), for clients that may never use https."""
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context(verify=self._verify)
        return self._ssl_context

    def _take_idle(self, key: Key) -> Connection | None:
        """The newest usable idle connection of ``key``; stale ones are closed."""
        stack = self._idle.get(key)
        while stack:
            connection = next(reversed(stack))
            del stack[connection]
            self._idle_count -= 1
            if connection.has_expired(self._keepalive_expiry):
                connection.close()  # past its keep-alive, or the server closed it
                continue
            return connection
        return None

    def _take_oldest_idle(self) -> Connection | None:
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
            raise httpx.PoolTimeout(
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

    def release(self, connection: Connection) -> None:
        """An exchange on ``connection`` ended: keep it for the next one, or close it
        (an answer not read to its end, surplus, the server's close, the pool closed)."""
        if connection not in self._busy:
            return  # released already
        self._busy.discard(connection)
        if not self._closed and self._idle_count < self._max_idle and connection.reusable():
            connection.idle_since = connection.loop.time()
            connection.served += 1
            self._idle.setdefault(connection.key, {})[connection] = None
            self._idle_count += 1
        else:
            connection.close()
        self._wake_one()  # its slot, or the connection itself, is free from now on

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
            connection.close()
