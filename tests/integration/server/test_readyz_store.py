"""/readyz against a real PostgreSQL store behind a loopback proxy the test can cut:
503 naming the store within 3 s of the cut, 200 again once the path is restored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid

import psycopg
import pytest

from stalwart.durable import WriteProbe, store_from_url
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.testing import ProbeAgent

PG_ADMIN = os.environ.get("STALWART_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
pytestmark = pytest.mark.postgres


class Proxy:
    """TCP proxy 127.0.0.1:<port> -> PostgreSQL; ``cut()`` drops every connection and refuses."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def restore(self) -> None:
        await self.start()


async def test_readyz_follows_the_store(start_node):
    name = f"stalwart_obs_{uuid.uuid4().hex[:8]}"
    try:
        admin = await psycopg.AsyncConnection.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    await admin.execute(f'CREATE DATABASE "{name}"')
    proxy = Proxy()
    await proxy.start()
    store = store_from_url(f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}", timeout=5)
    try:
        await store.open()
        n = await start_node(SupervisorSpec("root", [ChildSpec("a", ProbeAgent)]))

        # The node's own store check: a bounded write probe (answers within 1 s).
        n.node.readiness.add("store", WriteProbe(store.probe))
        assert (await n.client.get("/readyz")).status_code == 200
        await proxy.cut()
        cut_at = time.monotonic()
        while True:  # the probe's answer is reused for 1 s: not ready within ~2 s of the cut
            asked = time.monotonic()
            r = await n.client.get("/readyz")
            assert time.monotonic() - asked < 1.5  # every answer is prompt, store or not
            if r.status_code == 503:
                break
            assert time.monotonic() - cut_at < 3.0, "still ready 3 s after the cut"
            await asyncio.sleep(0.1)
        assert r.json()["failed"] == ["store"]
        assert (await n.client.get("/livez")).status_code == 200
        await proxy.restore()
        async with asyncio.timeout(30):  # the pool reconnects with its own backoff
            while (await n.client.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.2)
    finally:
        with contextlib.suppress(Exception):
            await proxy.cut()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await store.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
