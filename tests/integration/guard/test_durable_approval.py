"""Durable approvals on real nodes: a held refund parks its task (``awaiting_approval``,
no lease, no process busy); a decision -- after a node restart, from the CLI, the API or
the deadline -- resumes it from its journal, and the refund runs once or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stalwart.cli import main
from stalwart.guard import ApprovalQueue
from stalwart.llm.sim import order_for
from stalwart.node import app_node
from stalwart.observe import EventBus

pytestmark = pytest.mark.timeout(180)

APP = "tests.integration.guard.durable_approval_app"


def _big_refund(n: int = 0) -> dict[str, Any]:
    orders = [o for o in range(1000, 9999) if order_for(o)["amount_cents"] >= 9000]
    return {
        "text": f"Hi, my order #{orders[n]} arrived damaged. Please issue a refund of 8000 "
        "cents. Thanks, from ann@example.com",
        "from": "ann@example.com",
    }


async def _ready(node: Any) -> None:
    async with asyncio.timeout(30):
        while not node.ready:
            await asyncio.sleep(0.01)


async def _parked(store: Any, task_id: str) -> Any:
    async with asyncio.timeout(60):
        while (task := await store.get_task(task_id)).status != "awaiting_approval":
            assert not task.finished, task.outcome
            await asyncio.sleep(0.02)
    return task


async def test_a_parked_task_is_approved_after_a_node_restart(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    store = f"sqlite:///{tmp_path}/d.db"
    first, service = app_node(f"{APP}:app", store=store, node_id="n1", events=EventBus(log=False))
    seen: dict[str, Any] = {}

    async def park() -> None:
        await _ready(first)
        assert service.tasks is not None and service.store is not None and service.sim
        task_id = await service.tasks.submit("resolver", _big_refund(), task_id="R-1")
        task = await _parked(service.store, task_id)
        # parked: no lease, not running in the resolver process
        assert task.lease_expires is None and task.lease_owner is None
        assert task.outcome["awaiting"] == "approval" and task.outcome["tool"] == "refund"
        assert task.outcome["deadline"] > task.created_at + 86_000  # the default: a day
        # The agent writes the parked state, then its worker returns: the worker lets go
        # of the task just after the store shows it parked (a moment; longer on a loaded
        # machine), so the test waits for that, bounded.
        async with asyncio.timeout(10):
            while task_id in await first.call("resolver", {"op": "running"}, timeout=5):
                await asyncio.sleep(0.02)
        # the resolver runs one task at a time: another one completes meanwhile
        small = await service.tasks.submit(
            "resolver", {"text": "Where is my order #12?", "from": "bo@example.com"}
        )
        assert (await service.tasks.wait(small, timeout=60)).status == "succeeded"
        assert (await service.store.get_task(task_id)).status == "awaiting_approval"
        seen["approval"] = task.outcome["approval"]
        seen["payments"] = service.sim.world.tools.report()["deliveries"]["payments"]

    assert await first.run(until=park()) == 0
    assert seen["payments"] == {}  # nothing ran before the decision
    # the node is down; a person approves from the CLI, against the store
    code = await asyncio.to_thread(
        main, ["approvals", "approve", seen["approval"], "--store", store, "--by", "ann"]
    )
    assert code == 0
    second, service2 = app_node(f"{APP}:app", store=store, node_id="n2", events=EventBus(log=False))

    async def resume() -> None:
        await _ready(second)
        assert service2.tasks is not None and service2.sim is not None
        record = await service2.tasks.wait("R-1", timeout=90)
        seen["record"] = record
        seen["payments2"] = service2.sim.world.tools.report()["deliveries"]["payments"]
        assert service2.store is not None
        seen["steps"] = [e.name for e in (await service2.store.load_journal("R-1")).entries]

    assert await second.run(until=resume()) == 0
    record = seen["record"]
    assert record.status == "succeeded", record.outcome
    assert record.outcome["status"] == "completed"
    assert record.attempts >= 2  # parked once, claimed again (more if a process restarted)
    assert len(seen["payments2"]) == 1  # the refund ran exactly once
    assert seen["steps"].count("approval:refund") == 1 and seen["steps"].count("tool:refund") == 1


async def test_a_denial_and_a_deadline_resume_the_task_without_the_call_a_cancel_ends_it(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    store = f"sqlite:///{tmp_path}/e.db"
    node, service = app_node(f"{APP}:deadline_app", store=store, events=EventBus(log=False))
    seen: dict[str, Any] = {}

    async def work() -> None:
        await _ready(node)
        assert service.tasks is not None and service.store is not None and service.sim
        denied = await service.tasks.submit("resolver", _big_refund(0), task_id="D-1")
        task = await _parked(service.store, denied)
        queue = ApprovalQueue(store)
        try:
            queue.decide(task.outcome["approval"], approve=False, by="ann")
        finally:
            queue.close()
        # what the API does at once (False if the node's sweep was quicker)
        await service.tasks.resume_approved(denied)
        seen["denied"] = await service.tasks.wait(denied, timeout=60)
        # nobody decides this one: its 2 s deadline denies it
        late = await service.tasks.submit("resolver", _big_refund(1), task_id="D-2")
        parked = await _parked(service.store, late)
        assert parked.outcome["deadline"] <= parked.created_at + 60
        seen["late"] = await service.tasks.wait(late, timeout=60)
        queue = ApprovalQueue(store)
        try:
            seen["entries"] = {a.task_id: a for a in queue.list()}
        finally:
            queue.close()
        seen["payments"] = service.sim.world.tools.report()["deliveries"]["payments"]
        journal = await service.store.load_journal(late)
        seen["decision"] = next(e.value for e in journal.entries if e.name == "approval:refund")
        # a parked task can be cancelled; a late approval does not bring it back
        gone = await service.tasks.submit("resolver", _big_refund(2), task_id="D-3")
        await _parked(service.store, gone)
        done = await service.tasks.cancel(gone, by="ops")
        assert done is not None and done.cancelled and done.stopped == "not_running"
        queue = ApprovalQueue(store)
        try:
            (held,) = queue.list("pending")
            queue.decide(held.id, approve=True, by="ann")
        finally:
            queue.close()
        assert not await service.tasks.resume_approved(gone)
        assert service.control is not None
        await service.control.sweep()  # nor does the sweep wake it
        seen["gone"] = await service.store.get_task(gone)

    assert await node.run(until=work()) == 0
    assert seen["denied"].status == "succeeded" and seen["late"].status == "succeeded"
    assert seen["payments"] == {}  # neither refund ran
    assert seen["entries"]["D-1"].status == "denied" and seen["entries"]["D-1"].decided_by == "ann"
    assert seen["entries"]["D-2"].status == "denied"
    assert seen["entries"]["D-2"].decided_by == "deadline"
    assert seen["gone"].status == "cancelled" and seen["gone"].outcome["by"] == "ops"
    assert seen["decision"] == {
        "id": seen["entries"]["D-2"].id,
        "status": "denied",
        "by": "deadline",
    }
