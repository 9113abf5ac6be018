"""A LangGraph interrupt() survives a node restart: the task waits in the store, not in memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stalwart import RuntimeSettings
from stalwart.guard import ApprovalQueue
from stalwart.node import app_node
from stalwart.observe import EventBus

pytestmark = pytest.mark.timeout(150)
APP = "tests.integration.adapters.lg_apps:app"
SETTINGS = RuntimeSettings(heartbeat_interval=0.5, start_timeout=60.0)


async def _ready(node: Any) -> None:
    async with asyncio.timeout(60):
        while not node.ready:
            await asyncio.sleep(0.01)


async def test_an_interrupted_graph_resumes_on_a_new_node_after_a_decision(tmp_path):
    store = f"sqlite:///{tmp_path}/hitl.db"
    first, service = app_node(APP, store=store, events=EventBus(log=False), settings=SETTINGS)
    seen: dict[str, Any] = {}

    async def park() -> None:
        await _ready(first)
        assert service.tasks is not None
        task_id = await service.tasks.submit(
            "hitl", {"messages": [{"role": "user", "content": "refund please"}]}, task_id="h-1"
        )
        async with asyncio.timeout(60):
            while (record := await service.tasks.store.get_task(task_id)).status != (
                "awaiting_approval"
            ):
                await asyncio.sleep(0.02)
        seen["waiting"] = record.outcome

    assert await first.run(until=park()) == 0  # the node stops with the task parked

    waiting = seen["waiting"]
    assert waiting["tool"] == "langgraph.interrupt"
    assert waiting["value"] == {"question": "refund 900 cents on order 77?"}
    queue = ApprovalQueue(store)
    queue.decide(waiting["approval"], approve=True, by="bob")  # while no node runs
    queue.close()

    second, service = app_node(APP, store=store, events=EventBus(log=False), settings=SETTINGS)

    async def resume() -> None:
        await _ready(second)
        assert service.tasks is not None
        seen["done"] = await service.tasks.wait("h-1", timeout=60)  # woken by the sweep

    assert await second.run(until=resume()) == 0
    done = seen["done"]
    assert done.status == "succeeded", done.outcome
    assert done.outcome["answer"] == "refund approved by bob"
    assert done.outcome["thread_id"] == "h-1"
