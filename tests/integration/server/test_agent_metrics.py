"""Metrics recorded inside agent processes reach the node's /metrics (over the channel)."""

from __future__ import annotations

import asyncio
from typing import Any

from stalwart.observe import catalog
from stalwart.runtime import Agent, ChildSpec, SupervisorSpec


class ModelCaller(Agent):
    """Records what a model call would: requests, latency, tokens, an error by class."""

    async def handle_call(self, request: Any) -> Any:
        labels = {"model": "sim-strong", "provider": "sim", "operation": "chat"}
        catalog.MODEL_REQUESTS.labels(**labels).inc()
        catalog.MODEL_LATENCY.labels(**labels).observe(0.3)
        catalog.MODEL_TOKENS.labels("sim-strong", "sim", "input").inc(120)
        if request.get("fail"):
            catalog.MODEL_ERRORS.labels("sim-strong", "sim", "RateLimited").inc()
        return "ok"


def sample(text: str, prefix: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, (prefix, lines)
    return float(lines[0].rsplit(" ", 1)[1])


async def test_agent_metrics_show_on_the_node(start_node):
    root = SupervisorSpec("root", [ChildSpec("m1", ModelCaller), ChildSpec("m2", ModelCaller)])
    n = await start_node(root)
    before = (await n.client.get("/metrics")).text
    base = 'model="sim-strong",operation="chat",provider="sim"'
    start_requests = (
        sample(before, f"stalwart_model_requests_total{{{base}}}")
        if f"stalwart_model_requests_total{{{base}}}" in before
        else 0.0
    )
    for agent in ("m1", "m2"):
        for i in range(3):
            await n.node.call(agent, {"fail": i == 0}, timeout=5)
    # agents ship with their next heartbeat (0.2 s here): wait, bounded, for it to land
    async with asyncio.timeout(5):
        while True:
            text = (await n.client.get("/metrics")).text
            key = f"stalwart_model_requests_total{{{base}}}"
            if key in text and sample(text, key) - start_requests >= 6:
                break
            await asyncio.sleep(0.1)
    assert sample(text, f"stalwart_model_requests_total{{{base}}}") - start_requests == 6
    errors = 'error_class="RateLimited",model="sim-strong",provider="sim"'
    assert sample(text, f"stalwart_model_errors_total{{{errors}}}") >= 2
    assert sample(text, f"stalwart_model_request_duration_seconds_count{{{base}}}") >= 6
