"""The model clients' HTTP transport: httpx's transport interface over stalwart's own
HTTP/1.1 connections (:mod:`._h1`) in a pool whose cost per request does not grow with
its connections (:mod:`._pool`).

httpcore's default on asyncio goes through anyio (a cancel scope per read and write, a
socket poll per pooled request) and h11 (event objects and a state machine per
request): profiling the helpdesk agent loop put ~28% of an agent process's samples in
the HTTP client, most in those layers. Here a request is one write of its head and
body, and its answer is parsed from the connection's buffer once enough of it arrived.

Two ways in: :meth:`AsyncioTransport.handle_async_request`, httpx's (an
``httpx.AsyncClient(transport=...)``: the tools' clients, streamed model calls), and
:meth:`AsyncioTransport.post`, a model call's POST without httpx's request and response
objects (:func:`~stalwart.llm._http.post_json`). Errors are httpx's either way.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping

import httpx

from stalwart.llm._h1 import BodyTooLarge, Connection
from stalwart.llm._pool import Key, Pool

__all__ = ["Answer", "AsyncioTransport", "BodyTooLarge"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TARGETS_KEPT = 256
"""URLs whose parsed origin and request line a transport keeps (a client posts to one)."""


class Answer:
    """A whole answer to :meth:`AsyncioTransport.post`."""

    __slots__ = ("body", "headers", "raw_headers", "status")

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        raw_headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        self.status = status
        self.headers = headers
        """Lower-cased names; a repeated header's values joined with ``, ``."""
        self.raw_headers = raw_headers
        self.body = body


class AsyncioTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over :class:`~stalwart.llm._pool.Pool` (HTTP/1.1,
    ``limits`` as httpx's, no proxy: a model client that needs one gets httpx's own
    transport, see :func:`~stalwart.llm._http.environment_proxy`)."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        retries: int = 0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.pool = Pool(
            verify=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=retries,
        )
        """The connection pool (its ``connections``, for tests and diagnostics)."""
        self._targets: dict[str, tuple[Key, bytes]] = {}

    async def post(
        self,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        *,
        timeout: float,
        connect: float,
        max_bytes: int,
    ) -> Answer:
        """POST ``content`` to ``url`` and read the whole answer, its body at most
        ``max_bytes`` (else :class:`BodyTooLarge`). ``timeout``: for the pool, each write
        and each read (no byte within it); ``connect``: for a new connection."""
        target = self._targets.get(url)
        if target is None:
            target = self._target(url)
        key, line = target
        lines = [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"content-length: {len(content)}")
        block = "\r\n".join(lines)
        if block.count("\n") != len(lines) - 1 or block.count("\r") != len(lines) - 1:
            raise httpx.LocalProtocolError("a header's name or value holds a line break")
        request = line + block.encode("latin-1") + b"\r\n\r\n" + content
        connection = await self.pool.exchange(
            key, request, connect=connect, read=timeout, write=timeout, pool=timeout
        )
        try:
            body = await connection.read_all(max_bytes, timeout)
        finally:
            self.pool.release(connection)
        return Answer(connection.status, connection.headers, connection.raw_headers, body)

    def _target(self, url: str) -> tuple[Key, bytes]:
        parsed = httpx.URL(url)
        scheme = parsed.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"the transport speaks http and https, not {url!r}")
        port = parsed.port or _DEFAULT_PORTS[scheme]
        host = parsed.raw_host
        if b":" in host:  # an IPv6 address
            host = b"[" + host + b"]"
        if parsed.port is not None:
            host += b":%d" % parsed.port
        line = b"POST " + parsed.raw_path + b" HTTP/1.1\r\nhost: " + host + b"\r\n"
        target = ((scheme, parsed.host, port), line)
        if len(self._targets) >= _TARGETS_KEPT:
            self._targets.clear()
        self._targets[url] = target
        return target

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"the transport speaks http and https, not {scheme!r}")
        key = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        content = await request.aread()
        fields = request.headers.raw
        if any(name.lower() == b"transfer-encoding" for name, _ in fields):
            # a streamed body, read whole here: sent as one chunk
            content = (
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(content), content) if content else b"0\r\n\r\n"
            )
        block = b"\r\n".join(name + b": " + value for name, value in fields)
        if block.count(b"\n") != len(fields) - 1 or block.count(b"\r") != len(fields) - 1:
            raise httpx.LocalProtocolError("a header's name or value holds a line break")
        method = request.method.encode("ascii")
        head = method + b" " + url.raw_path + b" HTTP/1.1\r\n" + block + b"\r\n\r\n"
        timeouts = request.extensions.get("timeout", {})
        read = timeouts.get("read")
        connection = await self.pool.exchange(
            key,
            head + content,
            connect=timeouts.get("connect"),
            read=read,
            write=timeouts.get("write"),
            pool=timeouts.get("pool"),
            head_only=method == b"HEAD",
        )
        return httpx.Response(
            connection.status,
            headers=connection.raw_headers,
            stream=_Body(self.pool, connection, read),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": connection.reason},
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


class _Body(httpx.AsyncByteStream):
    """An answer's body as httpx reads it; its end (read through, or closed early) gives
    the connection back (kept alive, or closed when the body was not read to its end)."""

    def __init__(self, pool: Pool, connection: Connection, timeout: float | None) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        try:
            while part := await connection.read_some(self._timeout):
                yield part
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection)
