"""The adapter in one process: a resumed graph re-makes no model call, a changed one is caught.

A real simulated provider (counted where it answers) and a real SQLite store; the "kill" is
a BaseException thrown at a model-call boundary, which leaves the task running with its
lease, as a dead process would; a second runner then takes it over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import pytest
from examples.langgraph_support.app import SCENARIO, SUPPORT, app
from tests.integration.adapters._locked import own_sim

from stalwart.adapters.langgraph import StalwartSaver
from stalwart.agent import Resources, TaskContext
from stalwart.agent._guarded import prepare_input
from stalwart.agent._setup import build_models
from stalwart.durable import Runner, SQLiteStore
from stalwart.llm.sim import SimServer
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _own_sim(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The sim's key in this test's own vault, and ``STALWART_SIM_URL`` unset after it
    (:func:`~tests.integration.adapters._locked.own_sim`)."""
    yield from own_sim(app, tmp_path, monkeypatch)


TICKET = {
    "messages": [{"role": "user", "content": "Please refund 700 cents on order 4321."}],
    "thread_id": "customer-1",
}


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the task catches it."""


async def _run(
    tmp_path: Any, *, kill_before_call: int, agent: Any = SUPPORT, resumed: Any = None
) -> dict[str, Any]:
    """Run the ticket until the ``kill_before_call``-th model call, then resume it (with
    ``resumed``, another version of the agent, if given)."""
    with SimServer(scenario=SCENARIO) as sim:
        os.environ["STALWART_SIM_URL"] = sim.url  # the tools' services (the fixture restores it)
        events = EventBus(log=False)
        models = build_models(app, {"support"}, sim.url, events)
        chain = models["support"]
        calls = {"n": 0}
        complete = chain.complete

        async def dying(request: Any, **kw: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == kill_before_call:
                raise Killed
            return await complete(request, **kw)

        chain.complete = dying  # type: ignore[method-assign]
        store = SQLiteStore(str(tmp_path / "r.db"))
        await store.open()
        resources = _resources(SUPPORT, models, events)

        async def workflow(ctx: Any, value: Any) -> Any:
            tctx = TaskContext(ctx, resources, model="support")
            return await agent.fn(tctx, prepare_input(tctx, value))  # as TaskAgent does

        first = Runner(store, owner="a", events=events)
        task_id = await first.submit("support", TICKET)
        with pytest.raises(Killed):
            await first.run(task_id, workflow)
        answered_before = sim.world.next_id() - 1
        second = Runner(store, owner="b", events=events)
        outcome: dict[str, Any] = {"answered_before": answered_before}
        try:
            result = await second.run(task_id, _second(resumed or agent, resources), force=True)
            outcome["result"] = result
        finally:
            outcome["answered"] = sim.world.next_id() - 2  # this read took one id
            outcome["refunds"] = sim.world.tools.report()
            await store.close()
            await chain.aclose()
        return outcome


def _resources(agent: Any, models: Any, events: EventBus) -> Resources:
    """What TaskAgent gives the support agent's tasks: its tools, scopes, models, prices."""
    return Resources(
        agent="support", models=models,
        tools=ToolRegistry(agent.tools, breakers=BreakerRegistry()),
        scopes=frozenset(agent.scopes), callable_agents=frozenset(), runtime=None,
        events=events, prices=app.price_table(),
    )  # fmt: skip


def _second(agent: Any, resources: Resources) -> Any:
    async def workflow(ctx: Any, value: Any) -> Any:
        tctx = TaskContext(ctx, resources, model="support")
        return await agent.fn(tctx, prepare_input(tctx, value))

    return workflow


async def test_a_resumed_graph_answers_completed_calls_from_the_journal(tmp_path):
    out = await _run(tmp_path, kill_before_call=3)  # after lookup_order and refund ran
    assert out["answered_before"] == 2
    result = out["result"]
    assert result.status == "succeeded", result.result
    assert result.result["answer"] == "Refunded 700 cents on order 4321."
    assert result.result["thread_id"] == "customer-1"
    assert out["answered"] == 3  # calls 1 and 2 came from the journal
    assert out["refunds"]["duplicates"]["payments"] == 0
    assert len(out["refunds"]["deliveries"]["payments"]) == 1


async def test_a_graph_that_changed_fails_naming_the_call(tmp_path):
    from examples.langgraph_support import graph as g
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from stalwart.adapters.langgraph import LangGraphAgent

    def other_prompt(state: MessagesState) -> dict[str, Any]:
        sent = [{"role": "system", "content": "A changed prompt."}, *state["messages"]]
        return {"messages": [g.model.invoke(sent)]}

    changed = StateGraph(MessagesState)
    changed.add_node("agent", other_prompt)
    changed.add_node("tools", ToolNode(g.tools))
    changed.add_edge(START, "agent")
    changed.add_conditional_edges("agent", tools_condition)
    changed.add_edge("tools", "agent")
    swapped = dataclasses.replace(SUPPORT, graph=changed)
    assert isinstance(swapped, LangGraphAgent)

    # the first attempt runs the original graph; the resumed one the changed graph
    out = await _run(tmp_path, kill_before_call=2, resumed=swapped)
    result = out["result"]
    assert result.status == "failed"
    message = result.result["message"]
    assert "NonDeterminism" in result.result["type"]
    assert "LangGraph node 'agent', model call #1" in message


def test_the_agent_rejects_what_is_not_a_graph():
    from stalwart.adapters.langgraph import LangGraphAgent
    from stalwart.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a StateGraph"):
        LangGraphAgent(name="x", graph=object())
    assert asyncio.iscoroutinefunction(SUPPORT.fn.func)  # type: ignore[union-attr]


@pytest.mark.parametrize("durability", ["exit", "async"])
async def test_a_second_task_on_the_same_thread_continues_the_conversation(tmp_path, durability):
    agent = dataclasses.replace(SUPPORT, checkpoint_durability=durability)
    with SimServer(scenario=SCENARIO) as sim:
        os.environ["STALWART_SIM_URL"] = sim.url  # the tools' services (the fixture restores it)
        events = EventBus(log=False)
        models = build_models(app, {"support"}, sim.url, events)
        store = SQLiteStore(str(tmp_path / "t.db"))
        await store.open()
        resources = Resources(
            agent="support", models=models,
            tools=ToolRegistry(SUPPORT.tools, breakers=BreakerRegistry()),
            scopes=frozenset(SUPPORT.scopes), callable_agents=frozenset(), runtime=None,
            events=events, prices=app.price_table(),
        )  # fmt: skip
        runner = Runner(store, owner="a", events=events)
        saver = StalwartSaver(f"sqlite:///{tmp_path}/t.db")
        thread = {"configurable": {"thread_id": "customer-1"}}
        try:
            first = await runner.run(
                await runner.submit("support", TICKET), _second(agent, resources)
            )
            after_first = len(list(saver.list(thread)))
            follow_up = {
                "messages": [{"role": "user", "content": "Thanks!"}],
                "thread_id": "customer-1",
            }
            second = await runner.run(
                await runner.submit("support", follow_up), _second(agent, resources)
            )
            checkpoints = list(saver.list(thread))
        finally:
            saver.close()
            await store.close()
            await models["support"].aclose()
    # "exit": one checkpoint per run, written when it ended; "async": one per super-step
    # too (the input, each model and tool node), LangGraph's per-step history
    if durability == "exit":
        assert (after_first, len(checkpoints)) == (1, 2)
    else:
        # the first run: its input, the loop's start, three model and two tool steps
        assert after_first == 7 and len(checkpoints) > after_first + 1
    # either way the thread's newest checkpoint is the state the second task ended with
    newest = checkpoints[0].checkpoint["channel_values"]["messages"]
    assert len(newest) == len(second.result["state"]["messages"]) == 8
    assert first.result["answer"] == "Refunded 700 cents on order 4321."
    roles = [m["role"] for m in second.result["state"]["messages"]]
    # the thread's earlier turn, then this one: LangGraph's thread_id semantics
    assert roles == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    assert second.result["state"]["messages"][0]["content"] == TICKET["messages"][0]["content"]


async def test_a_store_failure_the_graph_swallows_still_stops_the_task(tmp_path):
    """LangGraph's ``ToolNode(handle_tool_errors=True)`` turns every tool exception into a
    message for the model. When the refund went out but its ledger record could not be
    written (another process held the store's write lock past its deadline), that message
    would have let the model answer "Refunded" on a task whose journal holds no refund
    (verify's LC-2 saw it on a full disk). The failed write stops the run whatever the
    graph does with the error: the next model call is not made, the task is given back,
    and the resumed run settles the refund through the ledger, once."""
    import sqlite3

    from examples.langgraph_support import graph as support_graph
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from stalwart.errors import StoreUnavailable

    path = tmp_path / "locked.db"
    blocker = sqlite3.connect(path, isolation_level=None, timeout=5)
    refunds: list[int] = []

    async def refund_then_locked_out(
        order_id: int, amount_cents: int, idempotency_key: str
    ) -> dict[str, Any]:
        """Refund part or all of an order (the payment service dedupes on the key)."""
        done: dict[str, Any] = await support_graph.refund.fn(
            order_id, amount_cents, idempotency_key
        )
        refunds.append(order_id)
        if len(refunds) == 1:
            blocker.execute("BEGIN IMMEDIATE")  # the ledger's record of it cannot be written
        return done

    refund = dataclasses.replace(support_graph.refund, fn=refund_then_locked_out)
    forgiving = StateGraph(MessagesState)
    forgiving.add_node("agent", support_graph.call_model)
    forgiving.add_node("tools", ToolNode(support_graph.tools, handle_tool_errors=True))
    forgiving.add_edge(START, "agent")
    forgiving.add_conditional_edges("agent", tools_condition)
    forgiving.add_edge("tools", "agent")
    agent = dataclasses.replace(
        SUPPORT, graph=forgiving, tools=[support_graph.lookup_order, refund]
    )

    with SimServer(scenario=SCENARIO) as sim:
        os.environ["STALWART_SIM_URL"] = sim.url  # the tools' services (the fixture restores it)
        events = EventBus(log=False)
        models = build_models(app, {"support"}, sim.url, events)
        store = SQLiteStore(str(path), timeout=0.5)
        await store.open()
        resources = _resources(agent, models, events)
        try:
            first = Runner(store, owner="a", events=events)
            task_id = await first.submit("support", TICKET)
            try:
                with pytest.raises(StoreUnavailable):
                    await first.run(task_id, _second(agent, resources))
            finally:
                if blocker.in_transaction:
                    blocker.execute("ROLLBACK")
                blocker.close()
            answered_before = sim.world.next_id() - 1
            second = Runner(store, owner="b", events=events)
            result = await second.run(task_id, _second(agent, resources), force=True)
            answered = sim.world.next_id() - 2  # this read took one id
            report = sim.world.tools.report()
        finally:
            await store.close()
            await models["support"].aclose()
    assert answered_before == 2  # the model was not asked again with the store's error
    assert result.status == "succeeded", result.result
    assert result.result["answer"] == "Refunded 700 cents on order 4321."
    assert answered == 3  # the resumed run: calls 1 and 2 from the journal, then the answer
    assert refunds == [4321, 4321]  # sent again with the same key, as the ledger says to
    assert report["duplicates"]["payments"] == 0
    assert len(report["deliveries"]["payments"]) == 1
