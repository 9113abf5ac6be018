"""The OpenAI Agents SDK support example with a kill switch at step boundaries (tests, bench).

With ``OAI_KILL_DIR`` set, an agent process that has just committed a journal record
chosen by ``OAI_KILL_EVERY`` (the record's task and position hash to 0 modulo it) and
not chosen before asks to be killed: it writes ``<dir>/kill-<pid>-<task>-<seq>`` and
holds its event loop until the test (or bench) SIGKILLs it. So every kill lands on a
step boundary: the step is durable, the next has not started, no model request is in
flight. ``OAI_KILL_MAX`` bounds the kills of a run, ``OAI_KILL_SEED`` varies the choice.
:func:`run_support` drives a node and does the killing. Without the variable nothing
changes. One task at a time per process (``max_tasks=1``), so no other task of the
process is mid-call when it dies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import pathlib
import signal
import time
from typing import Any

from examples.openai_agents_support.app import SUPPORT, app

from stalwart import RuntimeSettings
from stalwart.durable import Context
from stalwart.node import app_node
from stalwart.observe import EventBus

KILL_DIR = os.environ.get("OAI_KILL_DIR")


def _chosen(task_id: str, seq: int) -> bool:
    every = int(os.environ.get("OAI_KILL_EVERY", "3"))
    seed = os.environ.get("OAI_KILL_SEED", "0")
    digest = hashlib.sha256(f"{seed}:{task_id}:{seq}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % every == 0


def _install(root: pathlib.Path) -> None:
    record = Context._record
    limit = int(os.environ.get("OAI_KILL_MAX", "1000"))

    async def killing_record(
        self: Context, seq: int, kind: str, name: str, value: Any, *rest: Any, **options: Any
    ) -> Any:
        joined = await record(self, seq, kind, name, value, *rest, **options)
        mark = root / f"chosen-{self.task_id}-{seq}"
        if not _chosen(self.task_id, seq) or mark.exists():
            return joined
        if len(list(root.glob("chosen-*"))) >= limit:
            return joined
        mark.touch()
        (root / f"kill-{os.getpid()}-{self.task_id}-{seq}").touch()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the whole process stops here until killed
            time.sleep(0.01)
        return joined

    Context._record = killing_record  # type: ignore[method-assign]


if KILL_DIR:
    _install(pathlib.Path(KILL_DIR))

# every kill is a restart: room for many within the supervisor's period
app = dataclasses.replace(
    app, agents=[dataclasses.replace(SUPPORT, max_tasks=1)], intensity=100, period=60
)

# the fork server preloads the SDK (openai, agents): seconds of imports on a busy machine
SETTINGS = RuntimeSettings(heartbeat_interval=0.5, start_timeout=60)
APP = "tests.integration.adapters.oai_kill_app:app"
"""This module's app, as the node loads it (the agent processes import this module)."""


async def run_support(
    tmp_path: pathlib.Path, work: list[dict[str, Any]], *, kill_dir: pathlib.Path | None
) -> dict[str, Any]:
    """Run ``work`` on a node; with ``kill_dir``, SIGKILL the agent process whenever it
    asks (at a step boundary). Returns results, the sim's counts and the kills."""
    node, service = app_node(
        APP, store=f"sqlite:///{tmp_path}/oai.db", events=EventBus(log=False), settings=SETTINGS
    )
    facts: dict[str, Any] = {"kills": 0, "results": {}}

    async def killer(done: asyncio.Event) -> None:
        assert kill_dir is not None
        while not done.is_set():
            for request in kill_dir.glob("kill-*"):
                pid = int(request.name.split("-")[1])
                try:
                    os.kill(pid, signal.SIGKILL)
                    facts["kills"] += 1
                except ProcessLookupError:  # already gone (its hang detector got there first)
                    pass
                request.rename(request.with_name("killed" + request.name[4:]))
            await asyncio.sleep(0.005)

    async def drive() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        tasks = service.tasks
        done = asyncio.Event()
        chaos = asyncio.create_task(killer(done)) if kill_dir is not None else None
        try:
            for ticket in work:
                await tasks.submit("support", ticket, task_id=ticket["id"], seed=1)
            for ticket in work:
                record = await tasks.wait(ticket["id"], timeout=60)
                facts["results"][ticket["id"]] = (record.status, record.outcome)
        finally:
            done.set()
            if chaos is not None:
                await chaos
        assert service.sim is not None
        facts["model_requests"] = sum(
            n for key, n in service.sim.world.stats.items() if key.endswith(":requests")
        )
        facts["tools"] = service.sim.world.tools.report()

    assert await node.run(until=drive()) == 0
    return facts
