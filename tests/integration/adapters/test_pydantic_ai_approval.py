"""A Pydantic AI tool marked ``requires_approval=True`` waits in stalwart's approval
queue: the task parks (the default: no setting asks for it), survives a restart (new
runner, new process state), and the call runs once a person approves it (real SQLite
store and queue, in this process)."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic_ai import Agent
from tests.integration.adapters._scripted import Scripted

from stalwart.adapters.pydantic_ai import PydanticAIAgent, ToolPolicy
from stalwart.agent import Resources, TaskContext
from stalwart.durable import Runner, SQLiteStore
from stalwart.guard import ApprovalQueue, Security, TaintPolicy
from stalwart.llm import Message, ToolCall
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry

REPLIES = [
    Message("assistant", tool_calls=(ToolCall("c1", "cancel_order", {"order_id": 7}),)),
    Message("assistant", content="Order 7 is cancelled."),
]


def declaration(cancelled: list[int]) -> PydanticAIAgent:
    agent: Agent[None, str] = Agent(instructions="You help with orders.")

    @agent.tool_plain(requires_approval=True)
    async def cancel_order(order_id: int) -> str:
        """Cancel an order."""
        cancelled.append(order_id)
        return f"order {order_id} cancelled"

    return PydanticAIAgent(
        name="support",
        agent=agent,
        model="main",
        policies={"cancel_order": ToolPolicy(scopes=["orders:write"], side_effect=True)},
        scopes=["orders:write"],
        security=Security(taint=TaintPolicy()),  # held calls park by default
    )


async def attempt(
    store: SQLiteStore, queue: ApprovalQueue, task_id: str, client: Scripted, cancelled: list[int]
) -> Any:
    """One incarnation of the agent: its own declaration, tools and runner."""
    spec = declaration(cancelled)
    held = Resources(
        agent=spec.name,
        models={"main": client},
        tools=ToolRegistry(spec.tools, breakers=BreakerRegistry()),
        scopes=frozenset(spec.scopes),
        callable_agents=frozenset(),
        runtime=None,
        events=EventBus(log=False),
        security=spec.security,
        approvals=queue,
    )
    assert spec.fn is not None
    fn = spec.fn

    async def workflow(ctx: Any, value: Any) -> Any:
        return await fn(TaskContext(ctx, held, model="main"), value)

    runner = Runner(store, owner="node", events=EventBus(log=False))
    return await runner.run(task_id, workflow)


async def test_an_approval_required_tool_parks_the_task_until_a_person_approves(tmp_path):
    path = tmp_path / "store.db"
    store = SQLiteStore(str(path))
    await store.open()
    queue = ApprovalQueue(f"sqlite:///{path}")
    cancelled: list[int] = []
    try:
        task_id = await Runner(store, owner="node").submit("support", "Cancel order 7")
        first = Scripted(REPLIES)
        parked = await attempt(store, queue, task_id, first, cancelled)
        assert parked.status == "awaiting_approval", parked.result
        assert cancelled == []  # held: it did not run
        [pending] = queue.list(status="pending")
        assert pending.tool == "cancel_order" and pending.arguments == {"order_id": 7}
        assert "requires_approval" in pending.reason

        queue.decide(pending.id, approve=True, by="ann")
        assert await store.wake(task_id)
        again = Scripted(REPLIES[1:])  # a new incarnation: the first answer is journaled
        done = await asyncio.wait_for(attempt(store, queue, task_id, again, cancelled), 10)
        assert done.status == "succeeded", done.result
        assert done.result["output"] == "Order 7 is cancelled."
        assert cancelled == [7]  # ran once, after the approval
        assert again.calls == 1
    finally:
        queue.close()
        await store.close()
