"""/readyz follows the model chain: with every model's endpoint gone the node turns
*degraded* (200, ``status: degraded``, naming each model and why) within seconds, not dead;
back to ready once an endpoint answers again."""

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
