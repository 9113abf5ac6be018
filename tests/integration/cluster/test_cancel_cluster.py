"""Cancel and durable approvals across a cluster: two `stalwart run` nodes on one
PostgreSQL store. A task cancelled through the store (as another node's API or
`stalwart task cancel` does) is interrupted by the node whose process runs it; a task
parked for approval by one node is resumed, once approved, by another."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

from stalwart.durable import open_store
from stalwart.node import Tasks
from stalwart.testing import eventually

from .conftest import ROOT, start_node

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


async def test_a_cancel_through_the_store_stops_the_owning_nodes_step(
    pg_url, sim_url, tmp_path: pathlib.Path
):
    env = {"PYTHONPATH": str(ROOT)}
    app = "tests.integration.node.cancel_app:app"
    nodes = []
    store = await open_store(pg_url)
    try:
        for i in range(2):
            nodes.append(await start_node(f"c{i}", pg_url, sim_url, app=app, extra_env=env))
        tasks = Tasks(None, store)
        task_id = await tasks.submit("worker", {"dir": str(tmp_path), "mode": "sleep"})
        await eventually((tmp_path / f"{task_id}.started").exists, timeout=60)
        running = await store.get_task(task_id)
        assert running is not None and running.status == "running"
        owner_node = (running.lease_owner or "").partition("/")[0]
        (owner,) = [n for n in nodes if n.node_id == owner_node]
        started = time.monotonic()
        done = await tasks.cancel(task_id, by="ops")
        assert done is not None and done.cancelled and done.stopped == "elsewhere"

        def seen() -> bool:
            return any(e.get("task_id") == task_id for e in owner.events("task_cancel_seen"))

        await eventually(seen, timeout=30)
        took = time.monotonic() - started
        (event,) = [e for e in owner.events("task_cancel_seen") if e["task_id"] == task_id]
        assert event["stopped"] == "yielded"
        others = [n for n in nodes if n is not owner]
        assert not any(
            e.get("task_id") == task_id for n in others for e in n.events("task_cancel_seen")
        )
        print(
            f"cluster cancel: the owning node stopped the step {took * 1000:.0f} ms after the write"
        )
        assert took < 10.0  # the sweep runs every 0.25 s; generous on a busy machine
        # the cluster goes on; the cancelled task never runs its side effect, nor again
        other = await tasks.submit("worker", {"dir": str(tmp_path), "mode": "quick"})
        assert (await tasks.wait(other, timeout=60)).status == "succeeded"
        record = await store.get_task(task_id)
        assert record is not None and record.status == "cancelled" and record.attempts == 1
        assert not (tmp_path / f"{task_id}.effect").exists()
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
        await store.close()


async def test_a_parked_task_is_approved_from_the_cli_and_resumed_by_another_node(pg_url, sim_url):
    """Node a parks a held refund and stops; `stalwart approvals approve` writes the
    decision to the store; node b, started afterwards, resumes the task and the refund
    runs once."""
    from tests.integration.guard.test_durable_approval import _big_refund

    from stalwart.cli import main

    env = {"PYTHONPATH": str(ROOT)}
    app = "tests.integration.guard.durable_approval_app:app"
    store = await open_store(pg_url)
    nodes = []
    try:
        first = await start_node("a", pg_url, sim_url, app=app, extra_env=env)
        nodes.append(first)
        tasks = Tasks(None, store)
        task_id = await tasks.submit("resolver", _big_refund(), task_id="P-1")

        async def parked() -> bool:
            task = await store.get_task(task_id)
            assert task is not None and not task.finished, task
            return task.status == "awaiting_approval"

        async with asyncio.timeout(90):
            while not await parked():
                await asyncio.sleep(0.05)
        task = await store.get_task(task_id)
        assert task is not None and task.lease_owner is None and task.lease_expires is None
        assert task.outcome["awaiting"] == "approval" and task.outcome["tool"] == "refund"
        assert not (await store.load_effects(task_id))  # nothing ran before the decision
        assert await first.stop() == 0
        code = await asyncio.to_thread(
            main, ["approvals", "approve", task.outcome["approval"], "--store", pg_url,
                   "--by", "ann"],
        )  # fmt: skip
        assert code == 0
        second = await start_node("b", pg_url, sim_url, app=app, extra_env=env)
        nodes.append(second)
        assert second.node_id != first.node_id
        record = await tasks.wait(task_id, timeout=90)
        assert record.status == "succeeded", record.outcome
        assert record.outcome["status"] == "completed"
        steps = [e.name for e in (await store.load_journal(task_id)).entries]
        assert steps.count("approval:refund") == 1, steps
        effects = await store.load_effects(task_id)
        refunds = [e for e in effects.values() if e.name == "tool:refund"]
        assert len(refunds) == 1 and refunds[0].status == "completed", effects
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)
        await store.close()
