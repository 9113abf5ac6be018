"""A hosted Pydantic AI run interrupted mid-task resumes from its journal (real SQLite
store, in this process): recorded model calls and tool calls are not made again, and a
run that no longer matches its journal stops with NonDeterminismError naming the call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic_ai import Agent, ModelRetry
from tests.integration.adapters._scripted import Scripted

from stalwart.adapters.pydantic_ai import PydanticAIAgent, ToolPolicy
from stalwart.agent import Resources, TaskContext
from stalwart.durable import Runner, SQLiteStore
from stalwart.llm import Message, ToolCall
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry

REPLIES = [
    Message("assistant", tool_calls=(ToolCall("c1", "lookup_order", {"order_id": 7}),)),
    Message("assistant", content="Order 7 has shipped."),
]


def hosted(tool_name: str, runs: list[int]) -> PydanticAIAgent:
    agent: Agent[None, str] = Agent(instructions="You help with orders.")

    async def lookup(order_id: int) -> dict[str, Any]:
        runs.append(order_id)
        return {"order_id": order_id, "status": "shipped"}

    agent.tool_plain(name=tool_name)(lookup)
    return PydanticAIAgent(
        name="support",
        agent=agent,
        model="main",
        policies={tool_name: ToolPolicy(scopes=["orders:read"])},
        scopes=["orders:read"],
    )


def resources(spec: PydanticAIAgent, client: Scripted) -> Resources:
    return Resources(
        agent=spec.name,
        models={"main": client},
        tools=ToolRegistry(spec.tools, breakers=BreakerRegistry()),
        scopes=frozenset(spec.scopes),
        callable_agents=frozenset(),
        runtime=None,
        events=EventBus(log=False),
    )


def workflow(spec: PydanticAIAgent, client: Scripted) -> Any:
    held = resources(spec, client)
    assert spec.fn is not None
    fn = spec.fn

    async def run(ctx: Any, value: Any) -> Any:
        return await fn(TaskContext(ctx, held, model="main"), value)

    return run


async def interrupted(store: SQLiteStore, runs: list[int]) -> tuple[Runner, str]:
    """A task cut off while waiting for its second model answer."""
    runner = Runner(store, owner="node-a", events=EventBus(log=False))
    task_id = await runner.submit("support", "Where is order 7?")
    first = Scripted(REPLIES, hang_at=2)
    work = asyncio.ensure_future(runner.run(task_id, workflow(hosted("lookup_order", runs), first)))
    async with asyncio.timeout(10):
        await first.hanging.wait()
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work
    assert first.calls == 2 and runs == [7]
    return runner, task_id


@pytest.fixture
async def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "journal.db"))
    await s.open()
    yield s
    await s.close()


async def test_a_resumed_run_makes_no_recorded_model_or_tool_call_again(store):
    runs: list[int] = []
    runner, task_id = await interrupted(store, runs)
    again = Scripted(REPLIES[1:])  # the only call left to make: the second
    result = await runner.run(task_id, workflow(hosted("lookup_order", runs), again), force=True)
    assert result.status == "succeeded", result.result
    assert result.result["output"] == "Order 7 has shipped."
    assert again.calls == 1  # the first model call came from the journal
    assert runs == [7]  # and the tool's result too
    assert result.result["usage"]["model_calls"] == 2
    assert result.replayed_steps >= 3  # now, model, tool


async def test_a_run_that_diverges_from_its_journal_stops_naming_the_call(store):
    runs: list[int] = []
    runner, task_id = await interrupted(store, runs)
    # the code changed: the tool the journal recorded is now called find_order
    changed = Scripted(REPLIES[1:] * 3)
    result = await runner.run(task_id, workflow(hosted("find_order", runs), changed), force=True)
    assert result.status == "failed"
    error = result.result
    assert error["type"] == "NonDeterminismError", error
    assert "journal recorded step 'tool:lookup_order'" in error["message"]
    assert "the code now calls step 'model'" in error["message"]
    assert runs == [7]


async def test_a_tools_model_retry_reaches_the_model_and_replays_the_same(store):
    agent: Agent[None, str] = Agent()
    runs: list[int] = []

    @agent.tool_plain
    async def lookup_order(order_id: int) -> str:
        runs.append(order_id)
        if order_id < 0:
            raise ModelRetry("order ids are positive; ask the customer again")
        return "shipped"

    spec = PydanticAIAgent(
        name="support",
        agent=agent,
        model="main",
        policies={"lookup_order": ToolPolicy(scopes=["orders:read"])},
        scopes=["orders:read"],
    )
    client = Scripted(
        [
            Message("assistant", tool_calls=(ToolCall("c1", "lookup_order", {"order_id": -1}),)),
            Message("assistant", tool_calls=(ToolCall("c2", "lookup_order", {"order_id": 7}),)),
            Message("assistant", content="Order 7 has shipped."),
        ]
    )
    runner = Runner(store, owner="node-a", events=EventBus(log=False))
    task_id = await runner.submit("support", "Where is order -1?")
    result = await runner.run(task_id, workflow(spec, client))
    assert result.status == "succeeded", result.result
    assert runs == [-1, 7]
    retried = [m for m in client.requests[1].messages if m.role == "tool"]
    assert retried[0].tool_call_id == "c1"
    assert "order ids are positive" in retried[0].content  # the model read the retry
