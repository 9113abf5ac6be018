"""The LangGraph adapter's parts: what a graph sees of stalwart's model and tools, inputs,
decisions, and the saver's bookkeeping of which task wrote what."""

from __future__ import annotations

from typing import Any

import pytest
from examples.langgraph_support.graph import lookup_order, refund
from langgraph.checkpoint.base import empty_checkpoint

from stalwart.adapters.langgraph import (
    ChatModel,
    LangGraphAgent,
    StalwartSaver,
    default_resume,
    langchain_tools,
)
from stalwart.adapters.langgraph._agent import _graph_input
from stalwart.adapters.langgraph._saver import WRITER
from stalwart.errors import ConfigError


def test_the_model_and_tools_refuse_to_run_outside_a_stalwart_task():
    with pytest.raises(ConfigError, match="only inside a stalwart task"):
        ChatModel().invoke("hello")
    [tool] = langchain_tools(lookup_order)
    with pytest.raises(ConfigError, match="only inside a stalwart task"):
        tool.invoke({"order_id": 1})


def test_langchain_tools_show_the_model_the_stalwart_schema_without_the_idempotency_key():
    read, effect = langchain_tools(lookup_order, refund)
    assert (read.name, effect.name) == ("lookup_order", "refund")
    assert effect.description.startswith("Refund part or all")
    params = effect.args  # the JSON schema the model is shown
    assert set(params) == {"order_id", "amount_cents"}  # the runtime supplies the key
    bound = ChatModel().bind_tools([read, effect])
    names = [t["function"]["name"] for t in bound.kwargs["tools"]]  # type: ignore[attr-defined]
    assert names == ["lookup_order", "refund"]


def test_a_task_input_becomes_the_graph_input_and_its_thread():
    agent = LangGraphAgent(name="a", graph=_builder())
    assert _graph_input(agent, "hi") == (
        {"messages": [{"role": "user", "content": "hi"}]},
        None,
    )
    data: dict[str, Any] = {"messages": [], "thread_id": "customer-9"}
    assert _graph_input(agent, data) == ({"messages": []}, "customer-9")
    assert data["thread_id"] == "customer-9"  # the task's input is not changed
    # a generic stalwart input ({"text": ...}) is the user's message, for a graph of messages
    generic = {"text": "refund order 7", "id": "t-1", "thread_id": "c"}
    assert _graph_input(agent, generic, {"messages"}) == (
        {"messages": [{"role": "user", "content": "refund order 7"}]},
        "c",
    )
    assert _graph_input(agent, {"text": "x"}, {"text"}) == ({"text": "x"}, None)  # its own field
    other = LangGraphAgent(name="b", graph=_builder(), thread_key="conversation")
    assert _graph_input(other, {"conversation": 7, "x": 1}) == ({"x": 1}, "7")


def test_a_decision_becomes_what_interrupt_returns():
    decided = {"id": "ab12", "status": "denied", "by": "alice"}
    assert default_resume(decided) == {"approved": False, "by": "alice", "approval": "ab12"}
    assert default_resume({**decided, "status": "approved"})["approved"] is True


def test_the_agent_checks_its_settings():
    with pytest.raises(ConfigError, match="recursion_limit"):
        LangGraphAgent(name="a", graph=_builder(), recursion_limit=0)
    with pytest.raises(ConfigError, match="store URL"):
        StalwartSaver("threads.db")


def test_the_saver_forgets_only_what_one_task_wrote(tmp_path):
    saver = StalwartSaver(f"sqlite:///{tmp_path}/s.db")
    try:
        config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        ids = []
        for writer in ("task-1", "task-2", "task-2"):
            checkpoint = empty_checkpoint()
            token = WRITER.set(writer)
            try:
                config = saver.put(config, checkpoint, {"source": "loop", "step": 0}, {})
                saver.put_writes(config, [("messages", "x")], task_id="n1")
            finally:
                WRITER.reset(token)
            ids.append(checkpoint["id"])
        assert saver.latest("t") == ids[2]
        assert saver.latest("t", task="task-1") == ids[0]
        assert saver.forget_task("task-2") == 4  # two checkpoints and their two writes
        assert saver.latest("t") == ids[0]
        assert [c.checkpoint["id"] for c in saver.list(None)] == [ids[0]]
        [kept] = saver.list({"configurable": {"thread_id": "t"}})
        assert kept.pending_writes == [("n1", "messages", "x")]
    finally:
        saver.close()


def _builder() -> Any:
    from langgraph.graph import START, MessagesState, StateGraph

    builder = StateGraph(MessagesState)
    builder.add_node("noop", lambda state: {"messages": []})
    builder.add_edge(START, "noop")
    return builder
