"""Model alerts fired for real: the simulated model server (llm.sim) injects faults into real
HTTP model calls. A rising error rate fires ModelErrorRate at warning, then critical; an
outage of the primary model makes the fallback chain degrade, firing ProlongedDegradation;
both resolve once the faults are cleared."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from stalwart.llm import Message, ModelRequest, Provider, model_chain, model_client
from stalwart.llm.sim import SimServer
from stalwart.observe import Threshold, default_rules
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.testing import ProbeAgent

ASK = ModelRequest(messages=(Message("user", "What is the capital of Peru?"),))
FULL = [("warning", "firing"), ("critical", "firing"), ("critical", "resolved"),
        ("warning", "resolved")]  # fmt: skip


def rule(name: str, **changes: Any):
    base = next(r for r in default_rules() if r.name == name)
    return dataclasses.replace(base, **changes)


def seq(bodies: list[Any], name: str, label: str, prefix: str) -> list[tuple[str, str]]:
    return [
        (b["severity"], b["status"])
        for b in bodies
        if isinstance(b, dict)
        and b.get("alertname") == name
        and str(b["labels"].get(label, "")).startswith(prefix)
    ]


@pytest.fixture
async def sim():
    server = SimServer(port=0)
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


async def test_model_error_rate(start_node, receiver, sim):
    fast = rule("ModelErrorRate", window_s=3.0, warning=Threshold(0.05), critical=Threshold(0.25))
    await start_node(SupervisorSpec("root", [ChildSpec("a", ProbeAgent)]), rules=[fast],
                     alert_interval_s=0.1, webhook_url=receiver.url)  # fmt: skip
    client = model_client("sim:weak", providers={"sim": Provider(sim.base_url, api_key="k")})
    try:
        for _ in range(10):
            await client.complete(ASK, timeout=10)
        sim.world.set_fault("weak", status=400)  # permanent: one attempt, one error
        with pytest.raises(Exception):  # noqa: B017 - any classified model error
            await client.complete(ASK, timeout=10)
        await receiver.wait_for(lambda b: seq(b, "ModelErrorRate", "model", "sim:weak"))
        assert seq(receiver.bodies, "ModelErrorRate", "model", "sim:weak") == [
            ("warning", "firing")
        ]
        for _ in range(4):
            with pytest.raises(Exception):  # noqa: B017
                await client.complete(ASK, timeout=10)
        sim.world.clear_faults()
        # no more failures: once the 3 s window passes them, both resolve
        await receiver.wait_for(
            lambda b: len(seq(b, "ModelErrorRate", "model", "sim:weak")) == 4, timeout=20
        )
        assert seq(receiver.bodies, "ModelErrorRate", "model", "sim:weak") == FULL
        labels = next(b for b in receiver.bodies if b["severity"] == "critical")["labels"]
        assert labels["model"] == "sim:weak"
    finally:
        await client.aclose()


async def test_fallback_degradation(start_node, receiver, sim):
    fast = rule("ProlongedDegradation", warning=Threshold(1, 0.3), critical=Threshold(1, 0.8))
    await start_node(SupervisorSpec("root", [ChildSpec("a", ProbeAgent)]), rules=[fast],
                     alert_interval_s=0.1, webhook_url=receiver.url)  # fmt: skip
    providers = {"sim": Provider(sim.base_url, api_key="k")}
    chain = model_chain("alerting", ["sim:strong", "sim:weak"], providers=providers)
    try:
        sim.world.set_fault("strong", outage=True)
        response = await chain.complete(ASK, timeout=30)
        assert response.model == "sim:weak"  # served, degraded
        await receiver.wait_for(
            lambda b: (
                ("critical", "firing")
                in seq(b, "ProlongedDegradation", "component", "chain:alerting")
            )
        )
        sim.world.clear_faults()
        async with asyncio.timeout(20):  # the primary's breaker may still be open: retry
            while (await chain.complete(ASK, timeout=30)).model != "sim:strong":
                await asyncio.sleep(0.5)
        await receiver.wait_for(
            lambda b: len(seq(b, "ProlongedDegradation", "component", "chain:alerting")) == 4
        )
        assert seq(receiver.bodies, "ProlongedDegradation", "component", "chain:alerting") == FULL
    finally:
        await chain.aclose()
