"""/readyz follows the model chain: with every model's endpoint gone, or every model's
circuit breaker open (in the agent that calls it), the node turns *degraded* (200,
``status: degraded``, naming each model and why) within seconds, not dead; back to ready
once an endpoint answers again."""

from __future__ import annotations

import asyncio

import pytest

from stalwart.llm.sim import SimServer
from stalwart.node import app_node


async def _status(client, want: str) -> dict:  # type: ignore[no-untyped-def]
    # the model check answers within ~1 s of the change; the margin is for a loaded machine
    # (where another check, the store's, may time out now and then: that is not this test's)
    async with asyncio.timeout(20):
        while True:
            r = await client.get("/readyz")
            if r.json()["status"] == want:
                assert r.status_code == 200, r.text  # degraded is not dead
                return r.json()
            await asyncio.sleep(0.1)


@pytest.mark.timeout(60)
async def test_readyz_turns_degraded_naming_every_model_when_the_endpoint_is_gone(
    start_node, tmp_path, monkeypatch
):
    sim = SimServer().start()
    port = sim.port
    monkeypatch.setenv("STALWART_SIM_URL", sim.url)
    node, _ = app_node(
        "tests.integration.server.models_app:app", store=f"sqlite:///{tmp_path}/m.db"
    )
    n = await start_node(node)
    try:
        ready = await _status(n.client, "ready")
        assert ready["checks"]["model:main"]["ok"] is True
        await asyncio.to_thread(sim.stop)
        degraded = await _status(n.client, "degraded")
        assert degraded["ready"] is True and degraded["degraded"] == ["model:main"]
        detail = degraded["checks"]["model:main"]["detail"]
        assert "sim:strong: unreachable" in detail and "sim:weak: unreachable" in detail
        metrics = (await n.client.get("/metrics")).text
        assert 'stalwart_degraded{component="model:main"} 1.0' in metrics
        sim = SimServer(port=port).start()
        back = await _status(n.client, "ready")
        assert back["degraded"] == []
    finally:
        sim.stop()


@pytest.mark.timeout(60)
async def test_readyz_turns_degraded_when_every_models_breaker_is_open_in_an_agent(
    start_node, tmp_path, monkeypatch
):
    """The endpoint still accepts connections (the sim answers 500s): only the breakers,
    opened in the agent process by its failed calls and shipped to the node, say so."""
    with SimServer() as sim:
        monkeypatch.setenv("STALWART_SIM_URL", sim.url)
        node, service = app_node(
            "tests.integration.server.breaker_app:app", store=f"sqlite:///{tmp_path}/b.db"
        )
        n = await start_node(node)
        ready = await _status(n.client, "ready")
        assert ready["checks"]["model:main"]["ok"] is True
        for model in ("strong", "weak"):
            sim.world.set_fault(model, status=500)
        r = await n.client.post("/v1/tasks", json={"agent": "asker", "input": "hello"})
        assert r.status_code == 202, r.text
        record = await service.tasks.wait(r.json()["id"], timeout=30)
        assert record.status == "succeeded", record.outcome
        assert record.outcome["failed"].endswith("AllModelsFailed"), record.outcome
        loop = asyncio.get_running_loop()
        since = loop.time()
        degraded = await _status(n.client, "degraded")  # at the agent's next heartbeat
        assert loop.time() - since < 10
        assert degraded["degraded"] == ["model:main"]
        detail = degraded["checks"]["model:main"]["detail"]
        assert "sim:strong: circuit breaker open" in detail
        assert "sim:weak: circuit breaker open" in detail
        # /metrics labels the failures as the errors classify themselves: each model's
        # second attempt opened its breaker, so the call ended in CircuitOpen
        metrics = (await n.client.get("/metrics")).text
        errors = [x for x in metrics.splitlines() if x.startswith("stalwart_model_errors_total")]
        for model in ("sim:strong", "sim:weak"):
            label = f'error_class="retryable/systemic",model="{model}",provider="sim"'
            assert any(label in x for x in errors), errors
