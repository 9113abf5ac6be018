"""LangGraph's own token stream, hosted: a graph that reads its model's answers as a stream
(``model.astream`` in an async node, ``model.stream`` in a sync one; LangGraph's
``stream_mode="messages"`` uses the same path) gets each answer's text as the model
generates it, from the journaled stalwart model call; a task resumed after a kill gets the
journal's answer back whole, in one chunk, and the model is not asked again.

On a real node (``test_adapter_streams.py`` for the server-sent events), here in one process
with a real simulated provider and a real SQLite store, as ``test_langgraph_replay.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from examples.langgraph_support.app import SCENARIO, app
from langchain_core.messages import AIMessage
from tests.integration.adapters import lg_stream_app as streaming

from stalwart.adapters.langgraph import ChatModel
from stalwart.adapters.langgraph._run import RUN, GraphRun
from stalwart.agent import Resources, TaskContext
from stalwart.agent._guarded import prepare_input
from stalwart.agent._setup import build_models, secret_resolver
from stalwart.durable import Runner, SQLiteStore
from stalwart.llm.sim import SimServer
from stalwart.node._simkey import provision_sim_key
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry

pytestmark = pytest.mark.timeout(60)

TICKET = {
    "messages": [{"role": "user", "content": "Please refund 700 cents on order 4321."}],
    "thread_id": "customer-1",
}
ANSWER = "Refunded 700 cents on order 4321."


@pytest.fixture(autouse=True)
def _own_sim_key(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As in test_langgraph_replay.py: a vault of this test's own for the sim's key, and
    the sim's address restored afterwards."""
    monkeypatch.setenv("STALWART_SIM_URL", "")
    monkeypatch.setenv("STALWART_SECRETS", "vault")
    monkeypatch.setenv("STALWART_VAULT", str(tmp_path / "vault.enc"))
    monkeypatch.setenv("STALWART_VAULT_KEY_FILE", str(tmp_path / "vault.key"))
    monkeypatch.delenv("LG_STREAM_SEEN", raising=False)
    assert provision_sim_key(app, EventBus(log=False))
    secret_resolver.cache_clear()
    streaming.SEEN.clear()
    yield
    streaming.KILL["after_answer"] = False
    secret_resolver.cache_clear()


def _resources(sim: SimServer, agent: Any) -> tuple[Resources, Any]:
    events = EventBus(log=False)
    models = build_models(app, {"support"}, sim.url, events)
    resources = Resources(
        agent=agent.name, models=models,
        tools=ToolRegistry(agent.tools, breakers=BreakerRegistry()),
        scopes=frozenset(agent.scopes), callable_agents=frozenset(), runtime=None,
        events=events, prices=app.price_table(),
    )  # fmt: skip
    return resources, models["support"]


def _workflow(agent: Any, resources: Resources) -> Any:
    async def workflow(ctx: Any, value: Any) -> Any:
        tctx = TaskContext(ctx, resources, model="support")
        return await agent.fn(tctx, prepare_input(tctx, value))

    return workflow


@pytest.mark.parametrize("agent", [streaming.ASTREAMED, streaming.SYNCED], ids=["async", "sync"])
async def test_a_graph_reads_its_answers_as_they_come_and_whole_after_a_resume(tmp_path, agent):
    with SimServer(scenario=SCENARIO) as sim:
        os.environ["STALWART_SIM_URL"] = sim.url
        sim.world.set_fault("strong", latency_ms=200)  # the answer comes in over time
        resources, chain = _resources(sim, agent)
        store = SQLiteStore(str(tmp_path / "s.db"))
        await store.open()
        try:
            # an uninterrupted run: the final answer reaches the node in pieces
            runner = Runner(store, owner="a", events=resources.events)
            whole = await runner.run(
                await runner.submit(agent.name, TICKET), _workflow(agent, resources)
            )
            assert whole.result["answer"] == ANSWER
            assert [chars for _, chars in streaming.SEEN] == [0, 0, len(ANSWER)]
            assert streaming.SEEN[-1][0] > 1, streaming.SEEN  # live: several chunks
            live = streaming.SEEN.copy()

            # killed right after the node read the final answer (journaled by then)
            streaming.SEEN.clear()
            streaming.KILL["after_answer"] = True
            task_id = await runner.submit(agent.name, {**TICKET, "thread_id": "customer-2"})
            with pytest.raises(streaming.Killed):
                await runner.run(task_id, _workflow(agent, resources))
            asked = sim.world.stats["strong:requests"]
            resumed = await Runner(store, owner="b", events=resources.events).run(
                task_id, _workflow(agent, resources), force=True
            )
        finally:
            await store.close()
            await chain.aclose()
    assert resumed.result["answer"] == ANSWER
    assert sim.world.stats["strong:requests"] == asked  # no answer asked for again
    # the first attempt read the answer live; the resumed one got the journal's, whole
    first, again = streaming.SEEN[:3], streaming.SEEN[3:]
    assert first[:2] == live[:2] and first[2][0] > 1 and first[2][1] == len(ANSWER), first
    assert again == [(0, 0), (0, 0), (1, len(ANSWER))], streaming.SEEN

    # the thread's state is the same either way (the chunks add up to the same message);
    # the tools' answers hold ids of their own per task (a refund's)
    def turns(result: Any) -> list[Any]:
        messages = result["state"]["messages"]
        return [(m["role"], m["content"] if m["role"] != "tool" else "") for m in messages]

    assert turns(resumed.result) == turns(whole.result) and len(turns(whole.result)) == 6


async def test_the_streamed_message_is_the_invoked_one(tmp_path):
    """``astream``'s chunks add up to what ``ainvoke`` returns for the same request (each
    its own journaled call): text, tool calls, usage, and ids made the same way."""
    with SimServer(scenario=SCENARIO) as sim:
        resources, chain = _resources(sim, streaming.ASTREAMED)
        store = SQLiteStore(str(tmp_path / "m.db"))
        await store.open()
        model = ChatModel().bind_tools(streaming.tools)
        got: list[Any] = []

        async def workflow(ctx: Any, _: Any) -> Any:
            tctx = TaskContext(ctx, resources, model="support")
            token = RUN.set(GraphRun(tctx, asyncio.get_running_loop(), "support"))
            try:
                messages = TICKET["messages"]
                got.append(await model.ainvoke(messages))
                merged = None
                async for chunk in model.astream(messages):
                    merged = chunk if merged is None else merged + chunk
                got.append(merged)
            finally:
                RUN.reset(token)

        runner = Runner(store, owner="a", events=resources.events)
        try:
            task_id = await runner.submit("support", {})
            await runner.run(task_id, workflow)
        finally:
            await store.close()
            await chain.aclose()
    invoked, merged = got
    assert isinstance(invoked, AIMessage) and invoked.tool_calls
    assert (invoked.id, merged.id) == (f"stalwart-{task_id}-0", f"stalwart-{task_id}-1")
    assert merged.text == invoked.text
    assert [(c["name"], c["args"], c["id"]) for c in merged.tool_calls] == [
        (c["name"], c["args"], c["id"].replace("call_0_", "call_1_")) for c in invoked.tool_calls
    ]
    assert merged.usage_metadata == invoked.usage_metadata
    assert merged.response_metadata["model_name"] == invoked.response_metadata["model_name"]
