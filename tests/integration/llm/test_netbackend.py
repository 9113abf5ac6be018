"""The model clients' asyncio-native HTTP transport against real servers on loopback:
deadlines, errors as httpx names them, kept-alive connections, a connection the server
closed while idle, large bodies, and the pool's limits reaching it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from stalwart.llm._netbackend import AsyncioTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    conns: list[asyncio.Task[None]] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conns.append(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in conns:
            task.cancel()
        await asyncio.gather(*conns, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await reader.readexactly(length) if length else b""


def answer(body: bytes, *, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def client(**limits: int) -> httpx.AsyncClient:
    lim = httpx.Limits(**limits) if limits else httpx.Limits()
    return httpx.AsyncClient(transport=AsyncioTransport(limits=lim), timeout=5)


async def test_kept_alive_connections_are_reused_and_one_the_server_closed_is_not() -> None:
    accepted = 0
    closed_idle = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        first = accepted == 1
        for n in range(10):
            body = await read_request(reader)
            writer.write(answer(b'{"echo": ' + body + b"}"))
            await writer.drain()
            if first and n == 9:  # the first connection ends after ten answers, idle
                writer.close()
                await writer.wait_closed()
                closed_idle.set()
                return

    transport = AsyncioTransport(limits=httpx.Limits())
    async with serve(handler) as url, httpx.AsyncClient(transport=transport, timeout=5) as http:
        for n in range(10):
            r = await http.post(url, content=str(n).encode())
            assert r.json() == {"echo": n}
        assert accepted == 1
        async with asyncio.timeout(5):
            await closed_idle.wait()
            # the pool sees the idle connection closed (from the buffer, no socket poll)
            while not all(c.has_expired() for c in transport.pool.connections):
                await asyncio.sleep(0.01)
        r = await http.post(url, content=b"11")
        assert r.json() == {"echo": 11} and accepted == 2


async def test_a_silent_server_times_out_and_a_refused_connect_is_a_connect_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.Event().wait()  # no-deadline: the test's client times out first

    async with serve(silent) as url, client() as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(url, content=b"{}", timeout=0.3)
        assert 0.25 < loop.time() - started < 3
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        async with client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.post(f"http://127.0.0.1:{port}", content=b"{}")


async def test_a_body_cut_short_is_an_error_and_a_large_one_arrives_whole() -> None:
    big = b'"' + b"x" * (3 * 1024 * 1024) + b'"'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await read_request(reader)
        if body == b"cut":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
            await writer.drain()
            return
        writer.write(answer(big))
        await writer.drain()
        await read_request(reader)

    async with serve(handler) as url, client() as http:
        r = await http.post(url, content=b"big")
        assert r.content == big
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, content=b"cut")


async def test_the_limits_reach_the_pool() -> None:
    """150 calls in flight at once, each answered only when all 150 are connected: past
    httpx's default cap of 100 connections (the limits a client's ``limits=`` sets
    only on a transport httpx builds itself)."""
    want = 150
    connected = 0
    everyone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connected
        await read_request(reader)
        connected += 1
        if connected == want:
            everyone.set()
        await everyone.wait()
        writer.write(answer(b"{}"))
        await writer.drain()
        await read_request(reader)

    async with serve(handler) as url, client(max_connections=1000) as http:
        async with asyncio.timeout(30):
            got = await asyncio.gather(*(http.post(url, content=b"{}") for _ in range(want)))
    assert [r.status_code for r in got] == [200] * want


async def test_a_full_pool_queues_requests_and_reuses_its_connections() -> None:
    """Past ``max_connections`` requests wait for a connection to come back (no new
    one is opened), and a second wave reuses the first wave's connections."""
    accepted = 0
    in_flight = 0
    most = 0
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted, in_flight, most
        accepted += 1
        while True:
            await read_request(reader)
            in_flight += 1
            most = max(most, in_flight)
            await release.wait()
            in_flight -= 1
            writer.write(answer(b"{}"))
            await writer.drain()

    async with serve(handler) as url, client(max_connections=20) as http:
        wave = [asyncio.ensure_future(http.post(url, content=b"{}")) for _ in range(60)]
        async with asyncio.timeout(10):
            while in_flight < 20:
                await asyncio.sleep(0.01)
        assert accepted == 20  # the other 40 wait for a connection, none opened for them
        release.set()
        async with asyncio.timeout(30):
            assert [r.status_code for r in await asyncio.gather(*wave)] == [200] * 60
            again = await asyncio.gather(*(http.post(url, content=b"{}") for _ in range(20)))
        assert [r.status_code for r in again] == [200] * 20
        assert accepted == 20 and most == 20


async def test_a_request_waiting_past_the_pool_timeout_fails_and_the_next_gets_its_turn() -> None:
    gate = asyncio.Event()
    arrived = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            arrived.set()
            await gate.wait()
            writer.write(answer(b"{}"))
            await writer.drain()

    async with serve(handler) as url, client(max_connections=1) as http:
        first = asyncio.ensure_future(http.post(url, content=b"{}"))
        async with asyncio.timeout(10):
            await arrived.wait()  # the first request holds the one connection
        with pytest.raises(httpx.PoolTimeout):
            await http.post(url, content=b"{}", timeout=httpx.Timeout(5, pool=0.2))
        waiting = asyncio.ensure_future(http.post(url, content=b"{}"))
        cancelled = asyncio.ensure_future(http.post(url, content=b"{}"))
        await asyncio.sleep(0.1)
        cancelled.cancel()  # leaves the line: the one behind it is not stuck
        gate.set()
        async with asyncio.timeout(10):
            assert (await first).status_code == 200
            assert (await waiting).status_code == 200
        assert cancelled.cancelled()


async def test_idle_connections_past_max_keepalive_are_closed() -> None:
    accepted = 0
    closed = 0
    everyone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted, closed
        accepted += 1
        await read_request(reader)
        if accepted == 10:
            everyone.set()
        await everyone.wait()
        writer.write(answer(b"{}"))
        await writer.drain()
        if not await reader.read(1):  # the client closed this connection
            closed += 1

    async with (
        serve(handler) as url,
        client(max_connections=10, max_keepalive_connections=3) as http,
    ):
        async with asyncio.timeout(10):
            await asyncio.gather(*(http.post(url, content=b"{}") for _ in range(10)))
            while closed < 7:
                await asyncio.sleep(0.01)
        assert accepted == 10 and closed == 7  # three kept for the next requests


async def test_a_kept_alive_connection_closed_by_the_server_mid_request_is_retried_once() -> None:
    """The server closes a kept-alive connection (its idle timeout) as a request arrives:
    that request is sent again on a new connection instead of failing (issue 19: the
    failures opened the model's breaker). A fresh connection's failure is raised."""
    accepted = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        body = await read_request(reader)
        writer.write(answer(b'{"echo": ' + body + b"}"))
        await writer.drain()
        await read_request(reader)  # the second request on this connection: dropped

    async with serve(handler) as url, client() as http:
        assert (await http.post(url, content=b"1")).json() == {"echo": 1}
        assert (await http.post(url, content=b"2")).json() == {"echo": 2}
        assert accepted == 2  # the second went out again on a new connection

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # never answers, closes

    async with serve(silent) as url, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, content=b"1")
