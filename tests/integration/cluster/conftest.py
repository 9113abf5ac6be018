"""Real clusters for tests: several `stalwart run` node processes on one PostgreSQL."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from tests._postgres import require_postgres

from stalwart.testing import postgres_database
from stalwart.testing._cluster import ClusterNode, start_sim
from stalwart.testing._cluster import start_node as _start_node

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (skipped without a server, except on CI)."""
    require_postgres()
    with postgres_database("stalwart_cluster") as url:
        yield url


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    proc, url = await start_sim(cwd=str(ROOT))
    try:
        yield url
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()


async def start_node(name: str, store: str, sim_url: str, **options: Any) -> ClusterNode:
    """A `stalwart run` node process (``options``: ``app``, ``extra_env``)."""
    return await _start_node(name, store, sim_url, cwd=str(ROOT), **options)


@pytest.fixture
async def cluster(pg_url, sim_url) -> AsyncIterator[list[ClusterNode]]:
    nodes: list[ClusterNode] = []
    try:
        for i in range(3):
            nodes.append(await start_node(f"node{i}", pg_url, sim_url))
        yield nodes
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
