"""A local cluster for tests and benchmarks: a shared sim and `stalwart run` node processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from typing import Any

__all__ = ["ClusterNode", "start_node", "start_sim"]


class ClusterNode:
    """One `stalwart run` process, in its own process group (node, fork server, agents).

    ``lines`` collects the node's JSON log lines (its agents' too) as they come.
    """

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.node_id = ""
        self.lines: list[dict[str, Any]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def started(self, timeout: float = 30.0) -> None:
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stderr.readline()
                if not line:
                    raise RuntimeError(f"{self.name} exited before it started")
                event = _json(line)
                if event.get("event") == "node_started":
                    self.node_id = str(event["node"])
                    break
        self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            event = _json(line)
            if event:
                self.lines.append(event)

    def events(self, *names: str) -> list[dict[str, Any]]:
        return [e for e in self.lines if e.get("event") in names]

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (bounded); SIGKILL the whole group if it does not exit."""
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
        if self._drainer is not None:
            self._drainer.cancel()
        return self.proc.returncode


def _json(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


async def start_node(
    name: str,
    store: str,
    sim_url: str,
    *,
    app: str = "stalwart.demo.app:app",
    cwd: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> ClusterNode:
    """Start ``stalwart run APP --store STORE --no-http`` against the sim at ``sim_url``."""
    root = cwd or os.getcwd()
    env = {**os.environ, "STALWART_SIM_URL": sim_url, "PYTHONPATH": root, **(extra_env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        "run",
        app,
        "--store",
        store,
        "--no-http",
        cwd=root,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    node = ClusterNode(proc, name)
    try:
        await node.started()
    except BaseException:
        await node.stop(timeout=5)
        raise
    return node


async def start_sim(
    scenario: str | None = "stalwart.demo.app:SCENARIO", *, cwd: str | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``stalwart sim --port 0``; return the process and its root URL."""
    root = cwd or os.getcwd()
    args = ["--scenario", scenario] if scenario else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        "sim",
        "--port",
        "0",
        *args,
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        line = (await proc.stdout.readline()).decode()
    found = re.search(r"models at (\S+)/v1 ", line)
    if found is None:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"the sim did not start: {line!r}")
    return proc, found.group(1)
