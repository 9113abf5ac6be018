"""A hosted Pydantic AI run interrupted mid-task resumes from its journal (real SQLite
store, in this process): recorded model calls and tool calls are not made again, and a
run that no longer matches its journal stops with NonDeterminismError naming the call; a
refund whose ledger record cannot be written stops the task even when a capability of the
agent turns the error into text or a retry for the model."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from examples.pydantic_ai_support import app as support
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.capabilities import Hooks
from tests.integration.adapters._locked import WriteLock, locked_out_run, own_sim
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


@pytest.fixture
def _sim_of_this_test(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from own_sim(support.app, tmp_path, monkeypatch)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("_sim_of_this_test")
@pytest.mark.parametrize("forgiven", ["as_text", "as_retry"])
async def test_a_store_failure_a_capability_swallows_still_stops_the_task(
    tmp_path: pathlib.Path, forgiven: str
) -> None:
    """Pydantic AI's ``on_tool_execute_error`` hook (here through its ``Hooks``
    capability) may turn a tool's exception into the tool's result or into a
    ``ModelRetry`` for the model, as LangGraph's ``ToolNode(handle_tool_errors=True)``
    does. When the refund went out but its ledger record could not be written (another
    process held the store's write lock past its deadline), either would have let the
    model answer on a task whose journal holds no refund. The failed write stops the run
    whatever the hook does: the model is not asked again, the task is given back, and the
    resumed run settles the refund through the ledger, once, and answers."""
    path = tmp_path / "locked.db"
    lock = WriteLock(path)
    refunds: list[int] = []
    forgave: list[str] = []
    hooks: Hooks[Any] = Hooks()

    @hooks.on.tool_execute_error
    async def forgive(
        ctx: RunContext[Any], *, call: Any, tool_def: Any, args: Any, error: Exception
    ) -> Any:
        forgave.append(type(error).__name__)
        if forgiven == "as_retry":
            raise ModelRetry(f"{call.tool_name} failed ({error}); try again")
        return {"error": f"{call.tool_name} failed: {error}"}

    forgiving: Agent[support.SupportDeps, support.SupportOutput] = Agent(
        deps_type=support.SupportDeps,
        output_type=support.SupportOutput,
        instructions="You are a support agent for an online shop.",
        capabilities=[hooks],
    )
    forgiving.instructions(support.customer_name)
    forgiving.tool(support.lookup_order)

    @forgiving.tool(name="refund")
    async def refund_then_locked_out(
        ctx: RunContext[support.SupportDeps], order_id: int, amount_cents: int
    ) -> dict[str, Any]:
        """Refund part or all of an order."""
        done = await support.refund(ctx, order_id, amount_cents)
        refunds.append(order_id)
        if len(refunds) == 1:
            lock.take()  # the ledger's record of it cannot be written
        return done

    agent = dataclasses.replace(support.SUPPORT, agent=forgiving, tools=())
    ticket = {
        "text": "Hi, about order #4321: please make a refund of 700 cents.",
        "from": "ann@example.com",
    }
    out = await locked_out_run(
        path, support.app, agent, support.SCENARIO, ticket, chain="main", lock=lock
    )
    assert forgave == ["StoreUnavailable"]  # the hook had it; the run went on
    assert out.requests_before == 2  # the model was not asked again with the store's error
    assert out.result.status == "succeeded", out.result.result
    assert out.result.result["output"] == {
        "answer": "Refunded 700 cents for order #4321.",
        "refunded_cents": 700,
        "risk": 2,
    }
    assert out.requests == 3  # the resumed run: calls 1 and 2 from the journal, then the answer
    assert refunds == [4321, 4321]  # sent again with the same key, as the ledger says to
    assert out.report["duplicates"]["payments"] == 0
    assert len(out.report["deliveries"]["payments"]) == 1
