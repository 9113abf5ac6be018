"""On a real node: a refund over the auto-approval limit waits; `stalwart approvals approve`
lets it run, and the task completes with the refund made once."""

from __future__ import annotations

import asyncio

from stalwart import RuntimeSettings
from stalwart.cli import main
from stalwart.guard import ApprovalQueue
from stalwart.llm.sim import order_for
from stalwart.node import app_node
from stalwart.observe import EventBus


async def test_a_person_approves_a_held_refund_from_the_cli(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    store = f"sqlite:///{tmp_path}/hd.db"
    node, service = app_node(
        "tests.integration.guard.approval_app:app",
        store=store,
        events=EventBus(log=False),
        settings=RuntimeSettings(heartbeat_interval=0.5),
    )
    order = next(o for o in range(1000, 9999) if order_for(o)["amount_cents"] >= 9000)
    ticket = {
        "id": "T-big",
        "text": f"Hi, my order #{order} arrived damaged. Please issue a refund of 8000 cents. "
        "Thanks, from ann@example.com",
        "from": "ann@example.com",
    }
    facts: dict[str, object] = {}

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        assert service.tasks is not None and service.sim is not None
        task_id = await service.tasks.submit("triage", ticket, task_id=ticket["id"])
        queue = ApprovalQueue(store)
        try:
            async with asyncio.timeout(30):
                while not (pending := queue.list("pending")):
                    await asyncio.sleep(0.05)
        finally:
            queue.close()
        assert service.sim.world.tools.report()["deliveries"]["payments"] == {}  # held
        code = await asyncio.to_thread(
            main, ["approvals", "approve", pending[0].id, "--store", store, "--by", "ann"]
        )
        assert code == 0
        record = await service.tasks.wait(task_id, timeout=60)
        facts["outcome"] = record.outcome
        facts["report"] = service.sim.world.tools.report()

    assert await node.run(until=work()) == 0
    assert facts["outcome"]["status"] == "completed"
    assert len(facts["report"]["deliveries"]["payments"]) == 1
