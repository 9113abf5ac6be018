"""Operator control of circuit breakers (issue 18): ``/v1/breakers`` and ``stalwart breaker``
against a real node whose breakers live in its agent processes."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from stalwart.cli._main import main
from stalwart.errors import CircuitOpen
from stalwart.observe import REGISTRY
from stalwart.resilience import BREAKERS, BreakerConfig
from stalwart.runtime import Agent, ChildSpec, SupervisorSpec
from stalwart.testing import eventually

from .conftest import TOKEN


class UsesBreakers(Agent):
    async def handle_call(self, msg: Any) -> Any:
        """Make one call through the breaker ``msg["name"]``; answer its state and outcome."""
        breaker = BREAKERS.get(msg["name"], BreakerConfig(window_size=4, minimum_calls=2))
        try:
            breaker.call(lambda: None)
            outcome = "called"
        except CircuitOpen:
            outcome = "rejected"
        return {"state": breaker.state.label, "outcome": outcome, "pid": os.getpid()}


ROOT = SupervisorSpec("root", [ChildSpec("user", UsesBreakers)])


async def reply(n: Any, name: str) -> dict[str, Any]:
    result: dict[str, Any] = await n.node.call("user", {"name": name}, timeout=5)
    return result


async def until_agent_says(n: Any, name: str, key: str, value: str, timeout: float = 10) -> None:
    """Ask the agent until its answer for ``name`` has ``key == value`` (an order reaches it
    at its next heartbeat, 0.2 s here); fail after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while (await reply(n, name))[key] != value:
            await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_force_open_reaches_the_agent_process_and_close_ends_it(start_node):
    n = await start_node(ROOT)
    first = await reply(n, "dep-ops-a")
    assert first == {"state": "closed", "outcome": "called", "pid": first["pid"]}
    assert first["pid"] != os.getpid()  # the breaker lives in the agent's process

    r = await n.client.post("/v1/breakers/dep-ops-a/state", json={"state": "forced_open"})
    assert r.status_code == 202 and r.json() == {
        "dependency": "dep-ops-a",
        "state": "forced_open",
        "sticky": True,
    }

    await until_agent_says(n, "dep-ops-a", "outcome", "rejected")
    assert (await reply(n, "dep-ops-a"))["state"] == "forced_open"
    await eventually(
        lambda: (
            REGISTRY.get_sample_value("stalwart_breaker_state", {"dependency": "dep-ops-a"}) == 4
        ),
        10,
    )
    listed = (await n.client.get("/v1/breakers")).json()["breakers"]
    assert {"dependency": "dep-ops-a", "state": "forced_open", "override": "forced_open"} in listed
    summary = (await n.client.get("/v1/summary")).json()["system"]
    assert {"dependency": "dep-ops-a", "state": "forced_open"} in summary["breakers"]
    assert summary["breakers_open"] >= 1

    r = await n.client.post("/v1/breakers/dep-ops-a/state", json={"state": "closed"})
    assert r.status_code == 202 and r.json()["sticky"] is False

    await until_agent_says(n, "dep-ops-a", "outcome", "called")


@pytest.mark.timeout(60)
async def test_a_later_breaker_starts_in_the_order_and_bad_orders_are_refused(start_node):
    n = await start_node(ROOT)
    await reply(n, "dep-ops-warmup")
    r = await n.client.post("/v1/breakers/dep-ops-later/state", json={"state": "disabled"})
    assert r.status_code == 202
    got = (await n.client.get("/v1/breakers/dep-ops-later")).json()
    assert got["override"] == "disabled"

    await until_agent_says(n, "dep-ops-later", "state", "disabled")

    # bad orders are refused with what to send (same node: one start for both)
    r = await n.client.post("/v1/breakers/dep-ops-x/state", json={"state": "ajar"})
    assert r.status_code == 400 and "forced_open" in r.json()["error"]
    r = await n.client.post("/v1/breakers/dep-ops-x/state", json={"mode": "open"})
    assert r.status_code == 400 and '"state"' in r.json()["error"]
    r = await n.client.post("/v1/breakers/bad name/state", json={"state": "disabled"})
    assert r.status_code == 400
    assert (await n.client.get("/v1/breakers/dep-ops-never")).status_code == 404
    # a mutation without the token is refused before it reaches the handler
    r = await n.anon.post("/v1/breakers/dep-ops-x/state", json={"state": "forced_open"})
    assert r.status_code == 401
    assert "dep-ops-x" not in BREAKERS.overrides()


@pytest.mark.timeout(60)
async def test_the_cli_lists_and_orders(start_node, capsys):
    n = await start_node(ROOT)
    await reply(n, "dep-ops-cli")
    base = ["breaker", "--url", n.url, "--token", TOKEN]
    code = await asyncio.to_thread(main, [*base, "force-open", "dep-ops-cli"])
    assert code == 0
    assert '"state": "forced_open"' in capsys.readouterr().out
    code = await asyncio.to_thread(main, [*base, "list"])
    out = capsys.readouterr().out
    assert code == 0 and "dep-ops-cli" in out and "(override: forced_open)" in out
    code = await asyncio.to_thread(main, [*base[:3], "--token", "x" * 26, "close", "dep-ops-cli"])
    assert code == 1 and "wrong bearer token" in capsys.readouterr().err
    code = await asyncio.to_thread(main, [*base, "close", "dep-ops-cli"])
    assert code == 0
    assert BREAKERS.overrides().get("dep-ops-cli") is None
    code = await asyncio.to_thread(
        main, ["breaker", "--url", "http://127.0.0.1:9", "--token", TOKEN, "list"]
    )
    assert code == 2 and "cannot reach the node" in capsys.readouterr().err
