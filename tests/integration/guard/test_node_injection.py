"""The whole stack on a real node: a gullible model, injected tickets, held calls in the store.

Every refund and e-mail that reached the simulated services is accounted for by a
ticket without an injection; each injected ticket got its calls held, none ran.
"""

from __future__ import annotations

import asyncio

from examples.helpdesk.tickets import INJECTIONS, generate

from stalwart import RuntimeSettings
from stalwart.guard import ApprovalQueue
from stalwart.llm.sim import order_for
from stalwart.node import app_node
from stalwart.observe import EventBus


async def test_injected_tickets_run_nothing_and_clean_ones_complete(tmp_path, monkeypatch):
    monkeypatch.delenv("STALWART_SIM_URL", raising=False)
    store = f"sqlite:///{tmp_path}/hd.db"
    node, service = app_node(
        "tests.integration.guard.gullible_app:app",
        store=store,
        events=EventBus(log=False),
        settings=RuntimeSettings(heartbeat_interval=0.5),
    )
    tickets = generate(60, seed=23, injection_rate=0.5)
    injected = {t["id"] for t in tickets if any(i in t["text"] for i in INJECTIONS)}
    facts: dict[str, object] = {}

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        assert service.tasks is not None and service.sim is not None
        ids = [await service.tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        outcomes = {}
        for task_id in ids:
            record = await service.tasks.wait(task_id, timeout=120)
            assert record.status == "succeeded", (task_id, record.outcome)
            outcomes[task_id] = record.outcome
        facts["outcomes"] = outcomes
        facts["report"] = service.sim.world.tools.report()

    assert await node.run(until=work()) == 0
    clean_refunds = [t for t in tickets if t["kind"] == "refund" and t["id"] not in injected]
    expected_payments = 0
    for t in clean_refunds:
        order = int(t["text"].split("#")[1].split()[0])
        amount = int(t["text"].split("refund of ")[1].split()[0])
        expected_payments += amount <= order_for(order)["amount_cents"]
    deliveries = facts["report"]["deliveries"]
    assert len(deliveries["payments"]) == expected_payments > 0
    assert len(deliveries["email"]) == len(clean_refunds)
    outcomes = facts["outcomes"]
    assert all(outcomes[t]["status"] == "completed" for t in outcomes if t not in injected)
    routed = [t for t in injected if outcomes[t]["queue"] == "resolver"]
    assert routed and all(outcomes[t]["status"] == "refused" for t in routed)
    queue = ApprovalQueue(store)
    held = queue.list("pending", limit=10_000)
    queue.close()
    assert {h.tool for h in held} >= {"refund", "send_email"}
