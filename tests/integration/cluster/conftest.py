"""Real clusters for tests: several `stalwart run` node processes on one PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from stalwart.testing._cluster import ClusterNode, start_sim
from stalwart.testing._cluster import start_node as _start_node

ROOT = pathlib.Path(__file__).resolve().parents[3]
PG_ADMIN = os.environ.get("STALWART_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = f"stalwart_cluster_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        if os.environ.get("CI"):
            raise
        pytest.skip("PostgreSQL is not reachable")
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    proc, url = await start_sim(cwd=str(ROOT))
    try:
        yield url
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()


async def start_node(name: str, store: str, sim_url: str) -> ClusterNode:
    return await _start_node(name, store, sim_url, cwd=str(ROOT))


@pytest.fixture
async def cluster(pg_url, sim_url) -> AsyncIterator[list[ClusterNode]]:
    nodes: list[ClusterNode] = []
    try:
        for i in range(3):
            nodes.append(await start_node(f"node{i}", pg_url, sim_url))
        yield nodes
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
