"""The TCP fault proxy against a loopback echo server: forwarding, latency, black holes, resets."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from stalwart.chaos import FaultProxy
from stalwart.errors import ConfigError


@pytest.fixture
async def echo():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = await FaultProxy(port, max_hold=5.0).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
        server.close()
        await server.wait_closed()


async def _roundtrip(proxy: FaultProxy, payload: bytes, timeout: float = 5.0) -> bytes:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            writer.write(payload)
            await writer.drain()
            return await reader.readexactly(len(payload))
        finally:
            writer.close()


async def test_forwards_both_ways(echo):
    assert await _roundtrip(echo, b"hello") == b"hello"
    assert echo.stats["connections"] == 1 and echo.stats["bytes"] == 10


async def test_accepted_connections_have_nagle_off():
    """The proxy's side of each connection it accepts has TCP_NODELAY on, as the node's API
    does (a listening socket made with proto 0 left Nagle on: a kept-open client then
    waited ~40 ms for each answer's delayed ACK)."""
    seen: list[int] = []

    class Recording(FaultProxy):
        def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            super()._accept(reader, writer)

    async def upstream(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    proxy = await Recording(server.sockets[0].getsockname()[1], max_hold=5.0).start()
    try:
        for _ in range(2):
            async with asyncio.timeout(5):
                _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(b"x")
                await writer.drain()
                writer.close()
        async with asyncio.timeout(5):
            while len(seen) < 2:
                await asyncio.sleep(0.01)
        assert seen == [1, 1]
    finally:
        await proxy.stop()
        server.close()
        await server.wait_closed()


async def test_each_connection_s_arrival_is_timed(echo):
    before = time.monotonic()
    for _ in range(3):
        assert await _roundtrip(echo, b"x") == b"x"
    assert len(echo.accepted) == 3
    assert before <= echo.accepted[0] <= echo.accepted[1] <= echo.accepted[2] <= time.monotonic()


async def test_latency_is_added_each_way(echo):
    echo.set(latency_ms=150)
    started = time.monotonic()
    assert await _roundtrip(echo, b"x") == b"x"
    assert time.monotonic() - started >= 0.29  # 150 ms out, 150 ms back
    echo.clear()
    started = time.monotonic()
    await _roundtrip(echo, b"x")
    assert time.monotonic() - started < 0.25


async def test_a_black_hole_holds_traffic_until_it_ends(echo):
    echo.set(blackhole=True)
    pending = asyncio.ensure_future(_roundtrip(echo, b"held"))
    done, _ = await asyncio.wait([pending], timeout=0.4)
    assert not done  # nothing comes back while the route is dropped
    echo.clear()
    assert await pending == b"held"  # and it is delivered once the route is back
    assert echo.stats["held"] >= 1


async def test_resets_close_connections_with_rst(echo):
    echo.set(reset=True)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _roundtrip(echo, b"x")
    assert echo.stats["resets"] >= 1
    echo.clear()
    assert await _roundtrip(echo, b"ok") == b"ok"


def test_only_loopback_upstreams():
    with pytest.raises(ConfigError):
        FaultProxy(80, upstream_host="example.com")
