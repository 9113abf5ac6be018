"""The OpenAI Agents SDK example on a real node, its agent process SIGKILLed at step
boundaries: same results, no model call re-made, no side effect repeated; and an SDK
approval that parks its task across a node restart."""

from __future__ import annotations

import asyncio
import pathlib

import pytest
from examples.openai_agents_support.app import tickets
from tests.integration.adapters.oai_kill_app import SETTINGS, run_support

from stalwart.guard import ApprovalQueue
from stalwart.node import Node, app_node
from stalwart.observe import EventBus


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


@pytest.mark.timeout(120)
async def test_an_sdk_approval_parks_the_task_across_a_node_restart(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = tmp_path / "closed.txt"
    monkeypatch.setenv("OAI_CLOSED", str(closed))
    store = f"sqlite:///{tmp_path}/acc.db"
    app = "tests.integration.adapters.oai_approval_app:app"
    ticket = {"text": "Please close the account of ann"}

    async def until_ready(node: Node) -> None:
        async with asyncio.timeout(60):
            while not node.ready:
                await asyncio.sleep(0.02)

    node, service = app_node(app, store=store, events=EventBus(log=False), settings=SETTINGS)

    async def first() -> None:
        await until_ready(node)
        await service.tasks.submit("accounts", ticket, task_id="close-ann")
        async with asyncio.timeout(60):
            while True:
                record = await service.tasks.get("close-ann")
                if record is not None and record.status == "awaiting_approval":
                    break
                await asyncio.sleep(0.02)

    assert await node.run(until=first()) == 0  # the node stops with the task parked
    assert not closed.exists()  # nothing ran without a person

    queue = ApprovalQueue(store)
    [held] = queue.list("pending")
    assert held.tool == "close_account" and held.arguments == {"customer": "ann"}
    queue.decide(held.id, approve=True, by="alice")  # decided while no node runs
    queue.close()

    node, service = app_node(app, store=store, events=EventBus(log=False), settings=SETTINGS)

    async def second() -> None:
        await until_ready(node)
        record = await service.tasks.wait("close-ann", timeout=60)
        assert record.status == "succeeded", record.outcome
        assert record.outcome["answer"] == "Done: closed the account of ann"

    assert await node.run(until=second()) == 0
    assert len(closed.read_text().splitlines()) == 1  # closed once, after the approval
