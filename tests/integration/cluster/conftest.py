"""Real clusters for tests: several `stalwart run` node processes on one PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

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


class ClusterNode:
    """One `stalwart run` process (its own process group: node, fork server, agents)."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.node_id = ""
        self.lines: list[dict] = []

    async def started(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stderr.readline()
                assert line, f"{self.name} exited before it started"
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if event.get("event") == "node_started":
                    self.node_id = event["node"]
                    break
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while line := await self.proc.stderr.readline():
            try:
                self.lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    async def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(timeout):
                    await self.proc.wait()
            except (TimeoutError, ProcessLookupError):
                pass
        if self.proc.returncode is None:
            try:
                self.signal_group(signal.SIGKILL)
            except ProcessLookupError:
                pass
            await self.proc.wait()
        return self.proc.returncode


async def start_node(
    name: str, store: str, sim_url: str, app: str = "examples.helpdesk.app:app"
) -> ClusterNode:
    env = {**os.environ, "STALWART_SIM_URL": sim_url, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        "run",
        app,
        "--store",
        store,
        "--no-http",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    node = ClusterNode(proc, name)
    await node.started()
    return node


@pytest.fixture
async def sim_url() -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        "sim",
        "--port",
        "0",
        "--scenario",
        "examples.helpdesk.app:SCENARIO",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        base = re.search(r"models at (\S+)/v1 ", line).group(1)
        yield base
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()


@pytest.fixture
async def cluster(pg_url, sim_url) -> AsyncIterator[list[ClusterNode]]:
    nodes: list[ClusterNode] = []
    try:
        for i in range(3):
            nodes.append(await start_node(f"node{i}", pg_url, sim_url))
        yield nodes
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
