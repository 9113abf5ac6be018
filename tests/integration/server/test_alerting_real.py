"""More default rules fired for real at a webhook (warning, then critical, then resolved):
a circuit breaker opened by a dead dependency, an agent process whose memory really grows,
and a degradation held past its `for`. Thresholds and windows are shortened; the rules'
kind, metric and grouping are the defaults'."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest

from stalwart.observe import AlertRule, Degradations, Threshold, default_rules
from stalwart.resilience import BreakerConfig, BreakerRegistry, Policy
from stalwart.runtime import Agent, ChildSpec, SupervisorSpec
from stalwart.testing import ProbeAgent

MiB = 2**20


def fast(name: str, warning: Threshold, critical: Threshold, **changes: Any) -> AlertRule:
    rule = next(r for r in default_rules() if r.name == name)
    return dataclasses.replace(rule, warning=warning, critical=critical, **changes)


def seq(bodies: list[dict], name: str, **labels: str) -> list[tuple[str, str]]:
    return [
        (b["severity"], b["status"])
        for b in bodies
        if isinstance(b, dict)
        and b.get("alertname") == name
        and all(b["labels"].get(k) == v for k, v in labels.items())
    ]


FULL = [("warning", "firing"), ("critical", "firing"), ("critical", "resolved"),
        ("warning", "resolved")]  # fmt: skip


async def test_breaker_open(start_node, receiver):
    rule = fast("BreakerOpen", Threshold(1, 0), Threshold(1, 0.5))
    n = await start_node(SupervisorSpec("root", [ChildSpec("a", ProbeAgent)]), rules=[rule],
                         alert_interval_s=0.1, webhook_url=receiver.url)  # fmt: skip
    config = BreakerConfig(minimum_calls=2, window_size=2, wait_duration_in_open=1.5,
                           permitted_calls_in_half_open=1)  # fmt: skip
    dep = Policy("alerttest:crm", timeout=2, retry=None, breaker=config,
                 registry=BreakerRegistry())  # fmt: skip
    target = {"url": "http://127.0.0.1:9/down"}  # nothing listens: connection refused

    async def call() -> None:
        async with httpx.AsyncClient(timeout=2) as c:
            (await c.post(target["url"], json={})).raise_for_status()

    for _ in range(2):
        with pytest.raises(httpx.ConnectError):
            await dep.acall(call)
    await receiver.wait_for(lambda b: len(seq(b, "BreakerOpen", dependency="alerttest:crm")) >= 2)
    target["url"] = receiver.url  # the dependency is back; the next trial closes the breaker
    async with asyncio.timeout(10):
        while True:
            try:
                await dep.acall(call)
                break
            except Exception:  # still open: rejected without a call
                await asyncio.sleep(0.2)
    await receiver.wait_for(lambda b: len(seq(b, "BreakerOpen", dependency="alerttest:crm")) == 4)
    assert seq(receiver.bodies, "BreakerOpen", dependency="alerttest:crm") == FULL
    assert n.node.id


class Hog(Agent):
    """Keeps what it is asked to allocate: its process's resident memory really grows."""

    async def init(self, args: Any) -> None:
        self.keep: list[bytes] = []

    async def handle_call(self, request: Any) -> Any:
        self.keep.append(b"x" * int(request["mib"] * MiB))
        return len(self.keep)


async def test_memory_growth(start_node, receiver):
    rule = fast("MemoryGrowth", Threshold(20 * MiB, 0), Threshold(60 * MiB, 0), window_s=2.0)
    root = SupervisorSpec("root", [ChildSpec("hog", Hog), ChildSpec("calm", ProbeAgent)])
    n = await start_node(root, rules=[rule], alert_interval_s=0.1, webhook_url=receiver.url)
    evaluator = n.service.evaluator
    seen = evaluator.evaluations
    async with asyncio.timeout(5):  # let the evaluator see the agents' memory before growth
        while evaluator.evaluations < seen + 2:
            await asyncio.sleep(0.05)
    await n.node.call("hog", {"mib": 30}, timeout=10)
    await receiver.wait_for(lambda b: ("warning", "firing") in seq(b, "MemoryGrowth", agent="hog"))
    await n.node.call("hog", {"mib": 50}, timeout=10)
    await receiver.wait_for(lambda b: len(seq(b, "MemoryGrowth", agent="hog")) == 4)
    assert seq(receiver.bodies, "MemoryGrowth", agent="hog") == FULL
    assert seq(receiver.bodies, "MemoryGrowth", agent="calm") == []


async def test_prolonged_degradation(start_node, receiver):
    rule = fast("ProlongedDegradation", Threshold(1, 0.3), Threshold(1, 0.8))
    n = await start_node(SupervisorSpec("root", [ChildSpec("a", ProbeAgent)]), rules=[rule],
                         alert_interval_s=0.1, webhook_url=receiver.url)  # fmt: skip
    degradations = Degradations(events=n.node.events)
    degradations.begin("model:alerttest", "fallback", to="sim-weak")
    await receiver.wait_for(
        lambda b: (
            ("critical", "firing") in seq(b, "ProlongedDegradation", component="model:alerttest")
        )
    )
    assert degradations.end("model:alerttest") >= 0.8
    await receiver.wait_for(
        lambda b: len(seq(b, "ProlongedDegradation", component="model:alerttest")) == 4
    )
    assert seq(receiver.bodies, "ProlongedDegradation", component="model:alerttest") == FULL
    assert [e.name for e in n.waiter.seen if e.name.startswith("degradation")] == [
        "degradation_started", "degradation_ended",
    ]  # fmt: skip
