"""The node-kill fault: a real ``stalwart run`` process SIGKILLed mid-load and started
again on the same store, its tasks submitted over HTTP by a client that retries what it
could not hand over. Used by tests/integration/faults/test_node_kill.py (one short round)
and bench/faults.py (``node_kill``).

The app is the disk-full one (``disk_apps:app``): three journaled steps, then an
at-most-once delivery appended to a file, so a task run twice would show as a
duplicated delivery. Every other task is held after its first step until the node
has been restarted, so some are mid-task when the node dies.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import pathlib
import signal
import sys
import time
from typing import Any

import httpx
import psutil

APP = "tests.integration.faults.disk_apps:app"
TOKEN = "node-kill-fault-token-0123456789"
ROOT = pathlib.Path(__file__).resolve().parents[3]


class Node:
    """One ``stalwart run`` process in a session of its own; its port from its log."""

    def __init__(self, work: pathlib.Path, log: pathlib.Path) -> None:
        self.work = work
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.port: asyncio.Future[int] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {**os.environ, "STALWART_API_TOKEN": TOKEN,
               "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}  # fmt: skip
        self.port = asyncio.get_running_loop().create_future()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stalwart.cli", "run", APP,
            "--store", f"sqlite:///{self.work}/s.db", "--http-port", "0",
            "--log-db", str(self.work / "logs.db"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=self.work, start_new_session=True,
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read(self.proc, self.port))

    async def _read(self, proc: asyncio.subprocess.Process, port: asyncio.Future[int]) -> None:
        assert proc.stderr is not None
        with self.log.open("ab") as out:
            while raw := await proc.stderr.readline():
                out.write(raw)
                if not port.done() and b"http_listening" in raw:
                    try:
                        port.set_result(int(json.loads(raw)["port"]))
                    except ValueError:
                        pass
        if not port.done():
            port.set_exception(RuntimeError(f"the node exited before listening; see {self.log}"))

    async def url(self, timeout: float = 60) -> str:
        assert self.port is not None
        async with asyncio.timeout(timeout):
            return f"http://127.0.0.1:{await self.port}"

    def survivors(self) -> int:
        """Processes of the node's session still alive (its agents, if orphaned)."""
        assert self.proc is not None
        sid = self.proc.pid
        alive = 0
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getsid(p.info["pid"]) == sid and p.status() != psutil.STATUS_ZOMBIE:
                    alive += 1
            except (OSError, psutil.Error):
                continue
        return alive

    async def kill(self) -> int:
        """SIGKILL the node process only (not its session); its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(30):
            return await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM (the orchestrator's stop); its exit code. Kills the session if it hangs."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(60):
                code = await self.proc.wait()
        except TimeoutError:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session this scenario started
            code = await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return code

    def cleanup(self) -> None:
        """SIGKILL whatever is left of the session this scenario started."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def _ready(client: httpx.AsyncClient, base: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                if (await client.get(f"{base}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)


async def node_kill_round(
    work: pathlib.Path,
    *,
    before_s: float = 3.0,
    after_s: float = 3.0,
    rate: float = 20.0,
    wait_s: float = 90.0,
) -> dict[str, Any]:
    """One round: load at ``rate`` tasks/s, the node SIGKILLed ``before_s`` in and started
    again at once, ``after_s`` more of load once it is ready, then every accepted task
    waited for (up to
    ``wait_s``: one not finished by then, or unknown to the store, counts as lost).

    Returns accepted / completed / failed / lost / duplicated / quarantined, the
    unknown outcomes, the client's submit attempts refused while the node was down,
    ``ready_after_restart_s`` (start -> /readyz 200; ``first_ready_s`` the same for the
    first start), ``recovery_s`` (kill -> every
    task accepted before it finished) and the exit codes."""
    deliveries = work / "deliveries.log"
    deliveries.touch()
    hold = work / "go"
    node = Node(work, work / "node.log")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    accepted: list[str] = []
    state: dict[str, Any] = {"base": "", "refused": 0, "stop_at": float("inf")}
    changed = asyncio.Event()

    async def submit(client: httpx.AsyncClient, tid: str, body: dict[str, Any]) -> None:
        while True:  # a client that did not get an answer asks again, with the same id
            try:
                r = await client.post(
                    f"{state['base']}/v1/tasks",
                    json={"agent": "writer", "input": body, "task_id": tid},
                )
                if r.status_code in (202, 409):  # 409: the first attempt got through
                    accepted.append(tid)
                    return
            except httpx.TransportError:
                pass
            state["refused"] += 1
            changed.clear()
            try:
                async with asyncio.timeout(0.2):
                    await changed.wait()
            except TimeoutError:
                pass

    async def load(client: httpx.AsyncClient, prefix: str) -> None:
        n = 0
        while time.monotonic() < state["stop_at"]:
            body: dict[str, Any] = {"deliveries": str(deliveries)}
            if n % 2:
                body["hold"] = str(hold)
            await submit(client, f"{prefix}-{n}", body)
            n += 1
            await asyncio.sleep(1.0 / rate)

    out: dict[str, Any] = {}
    out["loadavg_1m"] = round(os.getloadavg()[0], 1)  # how busy the machine was
    try:
        cold = time.monotonic()
        await node.start()
        async with httpx.AsyncClient(headers=headers, timeout=5) as client:
            state["base"] = await node.url()
            await _ready(client, state["base"], 60)
            out["first_ready_s"] = round(time.monotonic() - cold, 3)  # a cold start, to compare
            loader = asyncio.create_task(load(client, "t"))
            await asyncio.sleep(before_s)
            before_kill = list(accepted)
            killed = time.monotonic()
            out["killed_exit_code"] = await node.kill()
            out["orphans_after_kill"] = node.survivors()
            started = time.monotonic()
            await node.start()  # the orchestrator starts it again at once
            state["base"] = await node.url()
            await _ready(client, state["base"], 60)
            changed.set()
            out["ready_after_restart_s"] = round(time.monotonic() - started, 3)
            state["stop_at"] = time.monotonic() + after_s  # load goes on, then stops
            hold.touch()  # the held tasks go on
            await loader

            deadline = time.monotonic() + wait_s

            async def record(tid: str) -> dict[str, Any]:
                while time.monotonic() < deadline:
                    r = await client.get(f"{state['base']}/v1/tasks/{tid}")
                    if r.status_code == 404:
                        return {"id": tid, "status": "missing"}
                    if r.status_code == 200 and r.json()["finished_at"] is not None:
                        view: dict[str, Any] = r.json()
                        return view
                    await asyncio.sleep(0.1)
                return {"id": tid, "status": "unfinished"}  # lost: not done by the deadline

            first = [await record(t) for t in before_kill]
            out["recovery_s"] = round(time.monotonic() - killed, 3)
            records = first + [await record(t) for t in accepted[len(before_kill) :]]
        out["node_exit_code"] = await node.stop()
    finally:
        node.cleanup()
    keys = collections.Counter(deliveries.read_text().split())
    statuses = collections.Counter(r["status"] for r in records)
    return {
        "accepted": len(records),
        "accepted_before_kill": len(before_kill),
        "completed": statuses["succeeded"],
        "failed": statuses["failed"],
        "quarantined": statuses["quarantined"],
        "lost": statuses["missing"] + statuses["unfinished"],
        "duplicated": sum(n - 1 for n in keys.values()),
        "unknown_outcomes": sum(
            bool(r.get("outcome_unknown"))
            or (isinstance(r.get("outcome"), dict) and r["outcome"].get("delivery") == "unknown")
            for r in records
        ),
        "submit_attempts_refused_while_down": state["refused"],
        **out,
    }  # fmt: skip
