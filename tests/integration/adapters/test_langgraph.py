"""The LangGraph support example on a real node: SIGKILLs mid-run change nothing.

The agent process is killed at step boundaries (see examples/langgraph_support/chaos.py);
every task must end with the same result as in an uninterrupted run, the simulated
provider must answer no model call twice, and the payment service must see no
duplicate refund.
"""

from __future__ import annotations

import pytest
from examples.langgraph_support.app import tickets
from examples.langgraph_support.chaos import run_tickets

pytestmark = pytest.mark.timeout(150)  # ~17 s idle; a loaded machine forks slowly


def _comparable(outcome: dict) -> dict:
    """What must match between runs (message ids and tool-call ids are the provider's)."""
    messages = outcome["state"]["messages"]
    return {
        "status": outcome["status"],
        "answer": outcome["answer"],
        "thread_id": outcome["thread_id"],
        "roles": [m["role"] for m in messages],
        "tools": [c["function"]["name"] for m in messages for c in m.get("tool_calls", ())],
    }


async def test_kills_at_step_boundaries_remake_no_model_call_and_no_side_effect(tmp_path):
    work = tickets(6, seed=3)
    clean = await run_tickets(f"sqlite:///{tmp_path}/clean.db", work, kill_share=0.0, seed=3)
    chaos = await run_tickets(f"sqlite:///{tmp_path}/chaos.db", work, kill_share=1.0, seed=3)
    assert chaos.kills >= 4  # most tickets had their agent killed mid-run
    assert {k: _comparable(v) for k, v in chaos.results.items()} == {
        k: _comparable(v) for k, v in clean.results.items()
    }
    first = next(iter(clean.results.values()))
    assert first["answer"].startswith("Refunded ") and first["status"] == "completed"
    assert chaos.answered_model_calls == clean.answered_model_calls == 3 * len(work)
    assert chaos.duplicate_refunds == 0
    assert chaos.refunds == clean.refunds == len(work)


async def test_many_tasks_at_once_in_one_process_all_finish(tmp_path):
    """Sync nodes hold worker threads while their model calls run: sixteen at once (the
    agent's max_tasks) must not starve the calls of the threads they need."""
    import asyncio

    from stalwart import RuntimeSettings
    from stalwart.node import app_node
    from stalwart.observe import EventBus

    node, service = app_node(
        "examples.langgraph_support.app:app",
        store=f"sqlite:///{tmp_path}/many.db",
        events=EventBus(log=False),
        settings=RuntimeSettings(heartbeat_interval=0.5, start_timeout=60.0),
    )
    work = tickets(16, seed=5)
    answers: dict[str, str] = {}

    async def run() -> None:
        async with asyncio.timeout(60):
            while not node.ready:
                await asyncio.sleep(0.01)
        assert service.tasks is not None
        ids = [
            await service.tasks.submit("support", t, task_id=f"m-{n}") for n, t in enumerate(work)
        ]
        for task_id in ids:
            record = await service.tasks.wait(task_id, timeout=90)
            assert record.status == "succeeded", (task_id, record.outcome)
            answers[task_id] = record.outcome["answer"]

    assert await node.run(until=run()) == 0
    expected = [t["messages"][0]["content"] for t in work]
    for n, text in enumerate(expected):
        cents, order = text.split(" cents on order ")
        assert answers[f"m-{n}"] == f"Refunded {cents.split()[-1]} cents on order {order[:-1]}."
