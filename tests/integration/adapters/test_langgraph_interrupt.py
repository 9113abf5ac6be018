"""LangGraph ``interrupt()`` parks the task in stalwart's approval queue; a decision resumes it.

In one process with a real SQLite store: the first run parks ``awaiting_approval`` (nothing
waits in memory); a *new* runner, approval queue and saver (as after a node restart) resume
it once a person decided, and the node receives the decision as ``interrupt()``'s value.
"""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import interrupt

from stalwart.adapters.langgraph import INTERRUPT_TOOL, LangGraphAgent, StalwartSaver
from stalwart.agent import Resources, TaskContext
from stalwart.durable import Runner, SQLiteStore
from stalwart.guard import ApprovalQueue
from stalwart.observe import EventBus
from stalwart.tools import ToolRegistry

pytestmark = pytest.mark.timeout(60)


def ask(state: MessagesState) -> dict[str, Any]:
    decision = interrupt({"question": "refund 700 cents on order 4321?"})
    verdict = f"refund {'approved' if decision['approved'] else 'denied'} by {decision['by']}"
    return {"messages": [{"role": "assistant", "content": verdict}]}


builder = StateGraph(MessagesState)
builder.add_node("ask", ask)
builder.add_edge(START, "ask")
AGENT = LangGraphAgent(name="hitl", graph=builder)


async def _attempt(url: str, store: SQLiteStore, task_id: str) -> Any:
    """One run of the task by a fresh runner and approval queue (a restarted process)."""
    queue = ApprovalQueue(url)
    events = EventBus(log=False)
    resources = Resources(
        agent="hitl", models={}, tools=ToolRegistry([]), scopes=frozenset(),
        callable_agents=frozenset(), runtime=None, events=events, approvals=queue,
    )  # fmt: skip

    async def workflow(ctx: Any, value: Any) -> Any:
        assert AGENT.fn is not None
        return await AGENT.fn(TaskContext(ctx, resources, model=None), value)

    try:
        return await Runner(store, owner="n", events=events).run(task_id, workflow)
    finally:
        queue.close()


@pytest.mark.parametrize("approve", [True, False])
async def test_an_interrupt_waits_in_the_approval_queue_and_resumes_with_the_decision(
    tmp_path, approve
):
    url = f"sqlite:///{tmp_path}/hitl.db"
    store = SQLiteStore(str(tmp_path / "hitl.db"))
    await store.open()
    try:
        task_id = await Runner(store, owner="n").submit(
            "hitl", {"messages": [{"role": "user", "content": "refund please"}], "thread_id": "t"}
        )
        parked = await _attempt(url, store, task_id)
        assert parked.status == "awaiting_approval"
        waiting = parked.result
        assert waiting["tool"] == INTERRUPT_TOOL
        assert waiting["value"] == {"question": "refund 700 cents on order 4321?"}
        assert (await store.get_task(task_id)).status == "awaiting_approval"

        # one held call in the queue, the interrupt: a person decides it
        queue = ApprovalQueue(url)
        assert [a.id for a in queue.list()] == [waiting["approval"]]
        queue.decide(waiting["approval"], approve=approve, by="alice")
        queue.close()
        assert await store.wake(task_id)

        done = await _attempt(url, store, task_id)
        assert done.status == "succeeded", done.result
        word = "approved" if approve else "denied"
        assert done.result["answer"] == f"refund {word} by alice"
        assert done.result["thread_id"] == "t"

        # LangGraph's own view of the thread: finished, no pending interrupt
        saver = StalwartSaver(url)
        snapshot = builder.compile(checkpointer=saver).get_state(
            {"configurable": {"thread_id": "t"}}
        )
        assert snapshot.next == ()
        assert snapshot.values["messages"][-1].content == f"refund {word} by alice"
        saver.close()
    finally:
        await store.close()
