"""Tools against real loopback services (the sim's): GD-2 behaviour and real timeouts."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest

from stalwart.llm.sim import SimServer
from stalwart.observe import EventBus
from stalwart.resilience import BreakerConfig, BreakerRegistry, RetryPolicy
from stalwart.tools import ToolRegistry, tool


@pytest.fixture
def sim():
    with SimServer() as server:
        yield server


def make_tools(base: str):
    @tool(
        scopes=["orders:read"],
        retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.02),
        breaker=BreakerConfig(window_size=2, minimum_calls=2, wait_duration_in_open=60),
    )
    async def lookup_order(order_id: int) -> dict:
        """Look up an order by its id."""
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.get(f"{base}/tools/orders/{order_id}")
            r.raise_for_status()
            return r.json()

    @tool(
        scopes=["payments:write"], side_effect=True, deduplicates=True, alternatives=["send_email"]
    )
    async def refund(order_id: int, amount_cents: int, idempotency_key: str) -> dict:
        """Refund part or all of an order."""
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.post(
                f"{base}/tools/payments/refund",
                json={"order_id": order_id, "amount_cents": amount_cents},
                headers={"Idempotency-Key": idempotency_key},
            )
            r.raise_for_status()
            return r.json()

    return ToolRegistry([lookup_order, refund], breakers=BreakerRegistry())


async def test_schema_comes_from_type_hints(sim):
    spec = make_tools(sim.url)["refund"].spec
    assert spec.description == "Refund part or all of an order."
    assert spec.parameters["required"] == ["order_id", "amount_cents"]
    assert "idempotency_key" not in spec.parameters["properties"]  # the runtime supplies it


async def test_ok_and_invalid_arguments(sim):
    tools = make_tools(sim.url)
    ok = await tools.invoke("lookup_order", {"order_id": 7})
    assert ok.status == "ok" and ok.value["order_id"] == 7
    bad = await tools.invoke("lookup_order", {"order_id": "seven"})
    assert bad.status == "invalid_arguments" and "order_id" in bad.error
    extra = await tools.invoke("lookup_order", {"order_id": 1, "admin": True})
    assert extra.status == "invalid_arguments" and "admin" in extra.error


async def test_disabled_tool_is_unavailable_with_alternatives(sim):
    tools = make_tools(sim.url)
    tools.disable("refund")
    result = await tools.invoke("refund", {"order_id": 1, "amount_cents": 5}, idempotency_key="k1")
    assert result.status == "unavailable" and result.alternatives == ("send_email",)
    assert '"status":"unavailable"' in result.content()
    assert sim.world.tools.report()["requests"] == {}


async def test_outage_exhausts_retries_then_opens_the_breaker(sim):
    bus = EventBus(log=False)
    tools = make_tools(sim.url)
    sim.world.set_fault("tool:orders", outage=True)
    first = await tools.invoke("lookup_order", {"order_id": 1}, events=bus)
    assert first.status == "unavailable"  # two attempts failed with 503: the breaker opened
    assert sim.world.stats["tool:orders:injected_error"] == 2
    started = time.monotonic()
    second = await tools.invoke("lookup_order", {"order_id": 1}, events=bus)
    assert second.status == "unavailable" and "breaker is open" in second.error
    assert time.monotonic() - started < 0.05
    assert [e.name for e in bus.recent("degradation_started")] == ["degradation_started"]


async def test_hanging_async_tool_ends_at_its_timeout():
    @tool(timeout=5, retry=None)
    async def slow() -> str:
        await asyncio.sleep(60)
        return "never"

    started = time.monotonic()
    result = await slow.invoke({})
    assert result.status == "unavailable" and "within 5 s" in result.error
    assert 5 <= time.monotonic() - started < 6


async def test_blocking_sync_tool_is_killed_at_its_timeout(tmp_path):
    marker = tmp_path / "still-running"

    @tool(timeout=5, retry=None)
    def stuck() -> str:
        """Blocks its thread; only a kill can stop it."""
        import time as t

        t.sleep(5.5)
        marker.write_text("the stuck call ran on after its timeout")
        return "never"

    started = time.monotonic()
    result = await stuck.invoke({})
    assert result.status == "unavailable"
    assert time.monotonic() - started < 5.5
    await asyncio.sleep(0.7)  # past when the sync call would have finished, had it lived
    assert not marker.exists()


async def test_sync_tool_result_and_exception():
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @tool(retry=None)
    def fails(x: int) -> int:
        raise ValueError(f"bad x={x}")

    assert (await add.invoke({"a": 2, "b": 3})).value == 5
    failed = await fails.invoke({"x": 1})
    assert failed.status == "error" and "ValueError: bad x=1" in failed.error
    assert os.getpid()  # the parent is untouched


async def test_side_effect_tool_passes_the_key_and_the_service_dedupes(sim):
    tools = make_tools(sim.url)
    args = {"order_id": 3, "amount_cents": 500}
    a = await tools.invoke("refund", args, idempotency_key="task-1:step-4")
    b = await tools.invoke("refund", args, idempotency_key="task-1:step-4")
    # the repeated key gets the first refund back, unchanged (nothing paid twice)
    assert a.status == b.status == "ok" and b.value == a.value
    report = sim.world.tools.report()
    assert report["deliveries"]["payments"] == {"task-1:step-4": 1}
    missing = await tools.invoke("refund", args)
    assert missing.status == "error" and "idempotency key" in missing.error


def test_authorization_is_by_scopes(sim):
    tools = make_tools(sim.url)
    assert tools.authorize("lookup_order", ["orders:read"]) is None
    assert "payments:write" in tools.authorize("refund", ["orders:read"])
    assert "no tool named" in tools.authorize("rm_rf", ["*"])
    assert [t.name for t in tools.allowed(["orders:read"])] == ["lookup_order"]
    assert tools.minimal_scopes(["lookup_order", "refund"]) == {"orders:read", "payments:write"}
