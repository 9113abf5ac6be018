"""TaskFailureRate and BudgetLimit fired for real, on a node running the helpdesk app:
failing tasks and a spent budget reach a loopback webhook at warning, then critical, and
resolve when the condition clears."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from examples.helpdesk.tickets import generate

from stalwart import RuntimeSettings
from stalwart.node import app_node
from stalwart.observe import EventBus, Threshold, default_rules
from stalwart.server import ObservabilityService, ServerSettings


def rule(name: str, **changes: Any):
    base = next(r for r in default_rules() if r.name == name)
    return dataclasses.replace(base, **changes)


def notices(bodies: list[Any], name: str) -> list[tuple[str, str]]:
    return [
        (b["severity"], b["status"])
        for b in bodies
        if isinstance(b, dict) and b.get("alertname") == name
    ]


async def run_app(ref: str, tmp_path, receiver, rules, work) -> None:
    service = ObservabilityService(
        ServerSettings(
            port=0, log_db=str(tmp_path / "logs.db"), alert_interval_s=0.2, webhook_url=receiver.url
        ),
        rules=rules,
    )
    node, app = app_node(
        ref,
        store=f"sqlite:///{tmp_path}/a.db",
        events=EventBus(log=False),
        settings=RuntimeSettings(heartbeat_interval=0.2),
        services=(service,),
    )

    async def body() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        await work(node, app)

    assert await node.run(until=body()) == 0


async def test_task_failure_rate_fires_and_resolves(tmp_path, receiver):
    fast = rule("TaskFailureRate", window_s=4.0, warning=Threshold(0.05), critical=Threshold(0.2))
    order_tickets = [t for t in generate(60, seed=71, injection_rate=0.0) if "order #" in t["text"]]

    async def work(node, app) -> None:
        app.sim.world.set_fault("strong", status=400)  # the resolver's tasks fail outright
        for n, t in enumerate(order_tickets[:4]):
            await node.result(await node.submit("triage", t, task_id=f"bad-{n}"), timeout=60)
        await receiver.wait_for(lambda b: ("critical", "firing") in notices(b, "TaskFailureRate"))
        app.sim.world.clear_faults()
        for n, t in enumerate(order_tickets[4:8]):  # good tasks while the window forgets
            await node.result(await node.submit("triage", t, task_id=f"good-{n}"), timeout=60)
        await receiver.wait_for(
            lambda b: ("warning", "resolved") in notices(b, "TaskFailureRate"), timeout=20
        )

    await run_app("examples.helpdesk.app:app", tmp_path, receiver, [fast], work)
    seen = notices(receiver.bodies, "TaskFailureRate")
    assert seen.index(("warning", "firing")) < seen.index(("critical", "firing"))
    assert ("critical", "resolved") in seen and ("warning", "resolved") in seen


async def test_budget_limit_fires_and_resolves(tmp_path, receiver):
    budget = rule("BudgetLimit")  # warning at 80 %, critical at 100 %, at once

    refund = next(t for t in generate(60, seed=72, injection_rate=0.0) if "refund" in t["text"])
    simple = next(t for t in generate(60, seed=73, injection_rate=0.0) if "password" in t["text"])

    async def work(node, app) -> None:
        # a refund ticket needs several model calls: its resolver task meets its limit
        await node.result(await node.submit("triage", refund, task_id="costly"), timeout=60)
        await receiver.wait_for(lambda b: ("critical", "firing") in notices(b, "BudgetLimit"))
        # the next tasks spend little of their own budget: the task scope falls back
        for n in range(3):
            await node.result(await node.submit("triage", simple, task_id=f"cheap-{n}"), timeout=60)
        await receiver.wait_for(
            lambda b: ("critical", "resolved") in notices(b, "BudgetLimit"), timeout=20
        )

    await run_app("tests.integration.server.apps:budgeted", tmp_path, receiver, [budget], work)
    seen = notices(receiver.bodies, "BudgetLimit")
    assert ("critical", "firing") in seen and ("critical", "resolved") in seen
    labels = next(b for b in receiver.bodies if b.get("alertname") == "BudgetLimit")["labels"]
    assert labels["scope"] == "task"
