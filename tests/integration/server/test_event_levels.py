"""Events reach the log at the level an operator expects, through a real node: a SIGKILLed
agent's exit at warning (its stop at shutdown at info), an alert firing at warning then,
critical, at error, and a supervisor giving up at error."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from stalwart.node import Node
from stalwart.observe import AlertRule, EventBus, Threshold, add_log_sink, configure_logging
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.testing import EventWaiter, ProbeAgent

from .conftest import FAST


@pytest.fixture
def records() -> Iterator[list[dict[str, Any]]]:
    """Every record this process logs, as the log store and stderr get it (level included)."""
    out: list[dict[str, Any]] = []
    configure_logging(stream=io.StringIO())
    remove = add_log_sink(lambda record, _line: out.append(record))
    try:
        yield out
    finally:
        remove()


def levels(records: list[dict[str, Any]], event: str, **fields: Any) -> list[str]:
    return [
        r["level"]
        for r in records
        if r["event"] == event and all(r.get(k) == v for k, v in fields.items())
    ]


async def test_a_killed_agent_and_a_firing_alert_log_at_warning_and_error(start_node, records):
    restarts = AlertRule(
        "RestartStorm", "increase", "stalwart_agent_restarts_total",
        Threshold(1, 0), Threshold(2, 0), "Agent restarts in the window",
        by=("agent",), window_s=30.0,
    )  # fmt: skip
    root = SupervisorSpec("root", [ChildSpec("victim", ProbeAgent)], intensity=20, period=60)
    node = Node(root, FAST, events=EventBus())  # a logging bus, as `stalwart run` has
    n = await start_node(node, rules=[restarts], alert_interval_s=0.1)
    for i in (1, 2):
        os.kill(n.node.runtime.whereis("victim").pid, signal.SIGKILL)
        await n.waiter.wait("agent_restarted", agent="victim", count=i, timeout=10)
    await n.waiter.wait("alert_firing", alertname="RestartStorm", severity="critical", timeout=15)
    assert await n.close() == 0

    assert levels(records, "agent_exited", agent="victim", signal="SIGKILL") == ["warning"] * 2
    assert levels(records, "agent_exited", agent="victim", reason="shutdown") == ["info"]
    assert set(levels(records, "agent_started", agent="victim")) == {"info"}
    assert set(levels(records, "agent_restarted", agent="victim")) == {"info"}
    assert levels(records, "alert_firing", alertname="RestartStorm", severity="warning") == [
        "warning"
    ]
    assert levels(records, "alert_firing", alertname="RestartStorm", severity="critical") == [
        "error"
    ]
    assert levels(records, "node_started") == levels(records, "node_stopped") == ["info"]


async def test_a_supervisor_giving_up_logs_at_error(records):
    root = SupervisorSpec("root", [ChildSpec("victim", ProbeAgent)], intensity=0, period=60)
    bus = EventBus()
    waiter = EventWaiter(bus)
    node = Node(root, FAST, events=bus)
    run = asyncio.create_task(node.run())
    try:
        await waiter.wait("node_started", timeout=20)
        os.kill(node.runtime.whereis("victim").pid, signal.SIGKILL)
        async with asyncio.timeout(20):
            code = await run
    finally:
        if not run.done():
            run.cancel()
    assert code != 0  # the root gave up: the node exits non-zero
    assert levels(records, "agent_exited", agent="victim", reason="killed") == ["warning"]
    assert levels(records, "supervisor_gave_up", supervisor="root") == ["error"]
