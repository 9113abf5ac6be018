"""Breaker states shipped from agents: never stuck "open" on the node.

A breaker no call reaches (a fallback while the primary serves) turns half-open
when its wait has passed, and a killed agent's states leave with it.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from stalwart.errors import CircuitOpen
from stalwart.observe import REGISTRY
from stalwart.resilience import BREAKERS, BreakerConfig
from stalwart.runtime import Agent, ChildSpec, SupervisorSpec
from stalwart.testing import eventually


class OpensBreakers(Agent):
    async def handle_call(self, msg: Any) -> Any:
        """Open the breaker ``msg["name"]`` (with ``msg["wait"]`` s in open)."""
        config = BreakerConfig(window_size=4, minimum_calls=2, wait_duration_in_open=msg["wait"])
        breaker = BREAKERS.get(msg["name"], config)

        def fail() -> None:
            raise ConnectionError("down")

        for _ in range(4):
            try:
                breaker.call(fail)
            except (ConnectionError, CircuitOpen):  # refused once open
                pass
        return {"state": breaker.state.label, "pid": os.getpid()}


def state(name: str) -> float | None:
    return REGISTRY.get_sample_value("stalwart_breaker_state", {"dependency": name})


async def test_an_untouched_open_breaker_turns_half_open_on_the_node(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", [ChildSpec("b", OpensBreakers)]))
    reply = await rt.call("b", {"name": "dep-idle", "wait": 0.6}, timeout=5)
    assert reply["state"] == "open"
    await eventually(lambda: state("dep-idle") == 1, 5)
    await eventually(lambda: state("dep-idle") == 2, 5)  # no call reached it; the wait passed


async def test_a_killed_agents_open_breaker_leaves_with_it(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", [ChildSpec("b", OpensBreakers)]))
    reply = await rt.call("b", {"name": "dep-killed", "wait": 600}, timeout=5)
    await eventually(lambda: state("dep-killed") == 1, 5)
    os.kill(reply["pid"], signal.SIGKILL)
    await eventually(lambda: state("dep-killed") == 0, 5)  # the restarted agent ships nothing
