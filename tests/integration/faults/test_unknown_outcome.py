"""An at-most-once side effect cut off by a kill: its task says the outcome is unknown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stalwart import RuntimeSettings
from stalwart.node import app_node
from stalwart.observe import REGISTRY, EventBus
from stalwart.server._tasks_api import task_view
from stalwart.testing import eventually

pytestmark = pytest.mark.timeout(90)


def _unknown_effects() -> float:
    found = REGISTRY.get_sample_value("stalwart_effects_unknown_total", {"tool": "send_email"})
    return found or 0.0


async def test_an_interrupted_effect_is_reported_unknown_not_done(tmp_path):
    node, service = app_node(
        "tests.integration.faults.poison_apps:app",
        store=f"sqlite:///{tmp_path}/m.db",
        events=EventBus(log=False),
        settings=RuntimeSettings(heartbeat_interval=0.5),
    )
    marker = tmp_path / "sent-once"
    seen: dict[str, Any] = {}
    # the registry is the process's: another test in this worker may have counted one
    # before (waiting for the text "... 1.0" then waited in vain)
    before = _unknown_effects()

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        tasks = service.tasks
        assert tasks is not None
        tid = await tasks.submit("mailer", {"to": "a@example.com", "marker": str(marker)})
        seen["task"] = await tasks.wait(tid, timeout=60)

        await eventually(lambda: _unknown_effects() >= before + 1, timeout=20)
        seen["counted"] = _unknown_effects() - before

    assert await node.run(until=work()) == 0
    task = seen["task"]
    assert seen["counted"] == 1  # shipped by the agent: one effect of unknown outcome
    assert marker.exists()  # the call was cut off after it started
    assert task.status == "succeeded"  # the task ended, but not as a plain success:
    outcome = task.outcome
    assert outcome["status"] == "outcome_unknown" and outcome["outcome_unknown"] is True
    assert outcome["answer"] == "the customer may have been e-mailed"
    [effect] = outcome["effects"]
    assert effect == {
        "tool": "send_email",
        "step": "send_email",
        "key": marker.read_text(),
        "outcome": "unknown",
    }
    view = await task_view(task)
    assert view["outcome_unknown"] is True and view["outcome"]["effects"] == [effect]
