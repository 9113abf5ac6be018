"""The OpenAI Agents SDK example on a real node, its agent process SIGKILLed at step
boundaries: same results, no model call re-made, no side effect repeated."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
from typing import Any

import pytest
from examples.openai_agents_support.app import tickets

from stalwart import RuntimeSettings
from stalwart.node import app_node
from stalwart.observe import EventBus

SETTINGS = RuntimeSettings(heartbeat_interval=0.5)
APP = "tests.integration.adapters.oai_kill_app:app"


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


@pytest.mark.timeout(90)
async def test_sigkilled_at_step_boundaries_it_ends_the_same_and_repeats_nothing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tickets(9, seed=3)
    clean = await run_support(tmp_path / "clean", work, kill_dir=None)
    kill_dir = tmp_path / "kills"
    kill_dir.mkdir()
    monkeypatch.setenv("OAI_KILL_DIR", str(kill_dir))
    monkeypatch.setenv("OAI_KILL_EVERY", "3")
    monkeypatch.setenv("OAI_KILL_MAX", "6")
    (tmp_path / "chaos").mkdir()
    chaotic = await run_support(tmp_path / "chaos", work, kill_dir=kill_dir)

    assert chaotic["kills"] >= 3, chaotic["kills"]
    for status, outcome in clean["results"].values():
        assert status == "succeeded" and outcome["status"] == "completed", outcome
    refunds = [o for _, o in clean["results"].values() if "Refunded" in str(o["answer"])]
    assert len(refunds) == 3  # the side-effect tool ran (every third ticket asks for one)
    # every task: the same result as the uninterrupted run
    assert chaotic["results"] == clean["results"]
    # no model call made again after a kill (counted at the simulated provider)
    assert chaotic["model_requests"] == clean["model_requests"] > 0
    # no side effect delivered twice, nor even sent twice
    payments = chaotic["tools"]
    assert payments["duplicates"]["payments"] == 0
    assert payments["requests"]["payments"] == clean["tools"]["requests"]["payments"] == 3
