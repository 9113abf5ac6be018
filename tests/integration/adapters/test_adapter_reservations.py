"""A hosted framework's model calls take their spend reservations as stalwart's own agent
loop does: a call that follows a tool call reserves with the settle of the call before it
(one lazy commit with that call's journal entry), not in a transaction of its own; a run
that ends in any way (an answer, a graph that stops after its tools, a cancel mid-tool)
leaves nothing reserved.

The frameworks' loops run for real, over a real SQLite store with the spend ledger in its
file (as a node gives it), against a scripted model. The ledger counts the transactions
it makes on its own (a reservation before a call; a settle apart from a call's entry: the
release of a reservation taken ahead for a call that did not come)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import pathlib
import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from agents import Agent as SDKAgent
from agents import function_tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import BaseModel
from pydantic_ai import Agent as PAIAgent
from tests.integration.adapters._scripted import Scripted

from stalwart.adapters.langgraph import ChatModel, LangGraphAgent, langchain_tools
from stalwart.adapters.openai_agents import OpenAIAgentsAgent, StalwartRunner
from stalwart.adapters.openai_agents import ToolPolicy as SDKPolicy
from stalwart.adapters.pydantic_ai import PydanticAIAgent
from stalwart.adapters.pydantic_ai import ToolPolicy as PAIPolicy
from stalwart.agent import PythonAgent, Resources, TaskContext
from stalwart.agent._guarded import prepare_input
from stalwart.durable import Runner, SQLiteStore
from stalwart.guard import Budget, Reservation, SpendLedger
from stalwart.llm import Message, Price, PriceTable, ToolCall
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry, tool

pytestmark = pytest.mark.timeout(60)

PRICES = PriceTable({"scripted:model": Price(1.0, 2.0)})
COST = (10 * 1.0 + 5 * 2.0) / 1e6
"""What one scripted call costs (10 prompt and 5 completion tokens at PRICES)."""
STALLED = [asyncio.Event()]
"""Set by a stalling tool (the last one: each cancel test adds its own, of its loop)."""


class Billed(Scripted):
    """The scripted model, billing each call what :data:`PRICES` says it costs."""

    async def complete(self, request: Any, *, timeout: float | None = None) -> Any:
        response = await super().complete(request, timeout=timeout)
        return msgspec.structs.replace(response, cost_usd=PRICES.cost(self.name, response.usage))


class Counted(SpendLedger):
    """The spend ledger, counting the transactions it makes on its own."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reserves = 0
        self.settles = 0

    async def reserve(self, *args: Any, **kwargs: Any) -> Reservation:
        self.reserves += 1
        return await super().reserve(*args, **kwargs)

    async def settle(self, *args: Any, **kwargs: Any) -> None:
        self.settles += 1
        await super().settle(*args, **kwargs)


_ids = itertools.count()


def calls(*names: str, **arguments: Any) -> Message:
    """A reply calling ``names``; every call has an id of its own (the SDK runs a call
    whose id it has seen once only)."""
    args = arguments or {"order_id": 7}
    return Message(
        "assistant", tool_calls=tuple(ToolCall(f"c{next(_ids)}", n, args) for n in names)
    )


def reserved(path: pathlib.Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM guard_reservations").fetchone()[0])
    finally:
        conn.close()


@tool(scopes=["orders:read"])
async def look(order_id: int) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "status": "shipped"}


@tool(scopes=["orders:read"])
async def stall(order_id: int) -> dict[str, Any]:
    """Waits until the task is cancelled."""
    STALLED[-1].set()
    await asyncio.Event().wait()
    return {}


class Hosted:
    """One agent process's worth of state for ``spec`` in this process: the scripted model,
    a task budget, the ledger in the store's file."""

    def __init__(self, path: pathlib.Path, store: SQLiteStore, spec: PythonAgent,
                 replies: list[Message]) -> None:  # fmt: skip
        self.path = path
        self.spec = spec
        self.client = Billed(replies)
        self.ledger = Counted(f"sqlite:///{path}")
        self.resources = Resources(
            agent=spec.name,
            models={"main": self.client},
            tools=ToolRegistry(spec.tools, breakers=BreakerRegistry()),
            scopes=frozenset(spec.scopes),
            callable_agents=frozenset(),
            runtime=None,
            events=EventBus(log=False),
            security=dataclasses.replace(spec.security, budget=Budget(task_usd=5.0)),
            ledger=self.ledger,
            prices=PRICES,
        )
        self.runner = Runner(store, owner="inline", events=EventBus(log=False))

    async def workflow(self, ctx: Any, value: Any) -> Any:
        task = TaskContext(ctx, self.resources, model="main")
        assert self.spec.fn is not None
        return await self.spec.fn(task, prepare_input(task, value))

    async def run(self, value: Any) -> Any:
        await asyncio.to_thread(self.ledger.spent, "day", "*")  # the ledger's tables first
        task_id = await self.runner.submit(self.spec.name, value)
        try:
            result = await self.runner.run(task_id, self.workflow)
        finally:
            self.ledger.close()
        assert result.status == "succeeded", result
        assert reserved(self.path) == 0  # nothing left held, whatever way the run ended
        assert self.ledger.spent("task", task_id, "") == pytest.approx(self.client.calls * COST)
        return result.result

    async def cancelled_in_a_tool(self, value: Any) -> None:
        """Run until a tool stalls, check the next call's reservation is held, cancel."""
        STALLED.append(asyncio.Event())
        await asyncio.to_thread(self.ledger.spent, "day", "*")
        task_id = await self.runner.submit(self.spec.name, value)
        work = asyncio.ensure_future(self.runner.run(task_id, self.workflow))
        try:
            async with asyncio.timeout(30):
                await STALLED[-1].wait()
            assert reserved(self.path) == 1  # the next call's, taken with the settle
            work.cancel()
            with pytest.raises(asyncio.CancelledError):
                await work
        finally:
            self.ledger.close()
        assert self.client.calls == 1
        assert reserved(self.path) == 0


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> Any:
    s = SQLiteStore(str(tmp_path / "r.db"))  # durability "full"
    await s.open()
    yield s
    await s.close()


# -- LangGraph ------------------------------------------------------------------------------


def _graph(*tools: Any, loop: bool = True) -> StateGraph[Any]:
    """A model node and a tool node; ``loop``: back to the model after the tools (the
    ReAct graph), else the run ends after them."""
    wrapped = langchain_tools(*tools)
    model = ChatModel().bind_tools(wrapped)

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(wrapped))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent" if loop else END)
    return builder


def _langgraph(*tools: Any, loop: bool = True) -> LangGraphAgent:
    return LangGraphAgent(
        name="graph", graph=_graph(*tools, loop=loop), model="main", tools=list(tools),
        scopes=["orders:read"],
    )  # fmt: skip


async def test_langgraph_calls_after_tool_calls_reserve_with_the_settle_before_them(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    replies = [calls("look"), calls("look"), Message("assistant", content="Shipped.")]
    hosted = Hosted(tmp_path / "r.db", store, _langgraph(look), replies)
    result = await hosted.run("Where is order 7?")
    assert result["answer"] == "Shipped." and hosted.client.calls == 3
    assert hosted.ledger.reserves == 1  # the first call's; the others rode on settles
    assert hosted.ledger.settles == 0  # every settle joined its call's journal entry


async def test_a_graph_that_stops_after_its_tools_releases_the_reservation_taken_ahead(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    hosted = Hosted(tmp_path / "r.db", store, _langgraph(look, loop=False), [calls("look")])
    await hosted.run("Where is order 7?")
    assert hosted.client.calls == 1
    assert (hosted.ledger.reserves, hosted.ledger.settles) == (1, 1)  # the release


async def test_a_graph_cancelled_in_a_tool_leaves_nothing_reserved(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    replies = [calls("stall"), Message("assistant", content="never")]
    hosted = Hosted(tmp_path / "r.db", store, _langgraph(stall), replies)
    await hosted.cancelled_in_a_tool("Where is order 7?")


# -- Pydantic AI ----------------------------------------------------------------------------


class Answer(BaseModel):
    text: str


async def pai_look(order_id: int) -> dict[str, Any]:
    return {"order_id": order_id, "status": "shipped"}


async def pai_stall(order_id: int) -> dict[str, Any]:
    STALLED[-1].set()
    await asyncio.Event().wait()
    return {}


def _pydantic_ai(*names: str) -> PydanticAIAgent:
    """An agent with structured output (Pydantic AI's output tool ``final_result``)."""
    agent: PAIAgent[None, Answer] = PAIAgent(instructions="Help.", output_type=Answer)
    for name, fn in (("look", pai_look), ("stall", pai_stall)):
        if name in names:
            agent.tool_plain(name=name)(fn)
    return PydanticAIAgent(
        name="pai", agent=agent, model="main", scopes=["orders:read"],
        policies={n: PAIPolicy(scopes=["orders:read"]) for n in names},
    )  # fmt: skip


async def test_pydantic_ai_takes_no_reservation_ahead_for_its_output_tool(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    replies = [calls("look"), calls("look"), calls("final_result", text="Shipped.")]
    hosted = Hosted(tmp_path / "r.db", store, _pydantic_ai("look"), replies)
    result = await hosted.run("Where is order 7?")
    assert result["output"] == {"text": "Shipped."} and hosted.client.calls == 3
    assert hosted.ledger.reserves == 1
    # the output tool's call ends the run: nothing was taken ahead for it, nothing released
    assert hosted.ledger.settles == 0


async def test_a_pydantic_ai_run_cancelled_in_a_tool_leaves_nothing_reserved(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    replies = [calls("stall"), calls("final_result", text="never")]
    hosted = Hosted(tmp_path / "r.db", store, _pydantic_ai("stall"), replies)
    await hosted.cancelled_in_a_tool("Where is order 7?")


# -- OpenAI Agents SDK ----------------------------------------------------------------------


@function_tool
def find_order(order_id: int) -> dict[str, Any]:
    """Find an order.

    Args:
        order_id: The order.
    """
    return {"order_id": order_id, "status": "shipped"}


@function_tool
async def wait_order(order_id: int) -> dict[str, Any]:
    """Waits until the task is cancelled.

    Args:
        order_id: The order.
    """
    STALLED[-1].set()
    await asyncio.Event().wait()
    return {}


def _sdk(tools: Sequence[Any]) -> OpenAIAgentsAgent:
    sdk = SDKAgent(name="Support", instructions="Help.", tools=list(tools))
    policies = {t.name: SDKPolicy(scopes=["orders:read"]) for t in tools}
    return OpenAIAgentsAgent(name="sdk", agent=sdk, model="main", tool_policies=policies)


async def test_the_agents_sdk_run_reserves_ahead_as_the_loop_does(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    replies = [calls("find_order"), calls("find_order"), Message("assistant", content="Shipped.")]
    hosted = Hosted(tmp_path / "r.db", store, _sdk([find_order]), replies)
    result = await hosted.run({"text": "Where is order 7?"})
    assert result["answer"] == "Shipped." and hosted.client.calls == 3
    assert (hosted.ledger.reserves, hosted.ledger.settles) == (1, 0)


async def test_a_streamed_sdk_run_reserves_each_call_on_its_own(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    # the streamed run goes on in the SDK's own task, which nothing here sees end
    spec = _sdk([find_order])
    sdk = spec.agent
    assert sdk is not None

    async def streamed(ctx: TaskContext, value: Any) -> dict[str, Any]:
        result = StalwartRunner.run_streamed(sdk, value["text"], task=ctx)
        async for _ in result.stream_events():
            pass
        return {"answer": result.final_output}

    code = PythonAgent(
        name="sdk", fn=streamed, model="main", tools=spec.tools, scopes=spec.scopes,
        security=spec.security,
    )  # fmt: skip
    replies = [calls("find_order"), calls("find_order"), Message("assistant", content="Shipped.")]
    hosted = Hosted(tmp_path / "r.db", store, code, replies)
    result = await hosted.run({"text": "Where is order 7?"})
    assert result["answer"] == "Shipped." and hosted.client.calls == 3
    assert (hosted.ledger.reserves, hosted.ledger.settles) == (3, 0)


async def test_an_sdk_run_cancelled_in_a_tool_leaves_nothing_reserved(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    replies = [calls("wait_order"), Message("assistant", content="never")]
    hosted = Hosted(tmp_path / "r.db", store, _sdk([wait_order]), replies)
    await hosted.cancelled_in_a_tool({"text": "Where is order 7?"})
