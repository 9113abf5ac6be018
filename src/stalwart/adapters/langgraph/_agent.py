"""A LangGraph graph declared as a stalwart agent: ``LangGraphAgent(name=..., graph=...)``.

The graph runs unchanged, as a stalwart task in the agent's own OS process: leased,
journaled, resumable. Its model and tool calls go through stalwart at the node
boundary (:class:`~stalwart.adapters.langgraph.ChatModel`,
:func:`~stalwart.adapters.langgraph.langchain_tools`); its checkpoints go to the
store database (:class:`~stalwart.adapters.langgraph.StalwartSaver`), keyed by the
task's ``thread_id``.

How a task resumes after a kill: the journal is the truth. The resumed attempt drops
the checkpoints its cut-off attempt wrote, then runs the graph again from the thread's
checkpoint at the task's start (journaled); every model and tool call the earlier
attempt completed is answered from the journal (the provider is not called, no side
effect repeats), and the run goes on live from the first call that was not recorded.
The thread ends with the same checkpoints as an uninterrupted run. Because the journal,
not the checkpoint, carries a run, the graph runs at LangGraph's ``durability="exit"`` by
default (``checkpoint_durability``): one checkpoint when the run ends, none beside every
model call.

``interrupt()`` in a node becomes a held call in stalwart's approval queue
(``stalwart approvals approve|deny``); the task parks ``awaiting_approval`` with no
process waiting, survives node restarts, and when a person decides, resumes and
hands the node ``resume(decision)`` (by default ``{"approved": bool, "by": ...,
"approval": id}``), as ``Command(resume=...)`` would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import os
import weakref
from collections.abc import Callable, Collection
from typing import Any

import msgspec
from langchain_core.messages import BaseMessage, convert_to_openai_messages
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel
from langgraph.types import Command, Interrupt

from stalwart.adapters.langgraph._run import RUN, GraphRun
from stalwart.adapters.langgraph._saver import LAZY, WRITER, StalwartSaver
from stalwart.agent import PythonAgent, TaskContext
from stalwart.errors import ConfigError, TaskSuspended
from stalwart.guard import Approval

__all__ = ["LangGraphAgent", "default_resume"]

CHECKPOINT_DURABILITY = ("exit", "async", "sync")
"""LangGraph's durability modes, as ``LangGraphAgent.checkpoint_durability`` takes them."""

INTERRUPT_TOOL = "langgraph.interrupt"
"""The tool name an ``interrupt()`` is held under in the approval queue."""

_TRACING_OFF = {
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
}


def default_resume(decision: dict[str, Any]) -> dict[str, Any]:
    """What ``interrupt()`` returns once a person decided: ``{"approved", "by", "approval"}``."""
    return {
        "approved": decision["status"] == "approved",
        "by": decision.get("by"),
        "approval": decision["id"],
    }


@dataclasses.dataclass(frozen=True)
class LangGraphAgent(PythonAgent):
    """A LangGraph graph (a ``StateGraph`` or a compiled graph) hosted as a stalwart agent.

    ``model`` names the chain of ``App.models`` a :class:`ChatModel` without its own
    ``chain`` uses; ``tools`` (stalwart tools) and ``scopes`` are what the agent may
    call, as for any agent. A task's input is the graph's input (a dict; a string
    becomes ``{"messages": [{"role": "user", "content": text}]}``); its
    ``thread_key`` field, if present, is the LangGraph ``thread_id`` (removed from the
    input), else the task id is. ``checkpoints`` is the store URL of the checkpoints
    (None: the app's store). ``stream``: each answer of a :class:`ChatModel` goes to
    ``GET /v1/tasks/{id}/events`` as it is generated (server-sent events), as
    ``LLMAgent(stream=True)`` does; the graph and the journal get whole answers.
    """

    graph: Any = None
    thread_key: str = "thread_id"
    recursion_limit: int = 25
    stream: bool = False
    checkpoints: str | None = None
    resume: Callable[[dict[str, Any]], Any] = default_resume
    """Turns a decision (``{"id", "status", "by"}``) into what ``interrupt()`` returns."""
    checkpoint_durability: str = "exit"
    """LangGraph's ``durability`` for the hosted run: ``"exit"`` (default) writes the
    thread's checkpoint once, when the run ends, completes, fails or interrupts; ``"async"``
    or ``"sync"`` write one after every super-step as well (LangGraph's per-step history,
    for ``get_state_history``). A task's progress is in its journal either way: a resumed
    task drops the checkpoints its cut-off attempt wrote and replays from the journal."""

    def __post_init__(self) -> None:
        if not isinstance(self.graph, StateGraph | Pregel):
            raise ConfigError(
                f"LangGraphAgent {self.name!r}: graph must be a StateGraph (the builder) or a "
                f"compiled graph, got {type(self.graph).__name__}"
            )
        if not 1 <= self.recursion_limit <= 10_000:
            raise ConfigError(f"LangGraphAgent {self.name!r}: recursion_limit must be in 1..10000")
        if self.checkpoint_durability not in CHECKPOINT_DURABILITY:
            raise ConfigError(
                f"LangGraphAgent {self.name!r}: checkpoint_durability must be one of "
                f"{', '.join(CHECKPOINT_DURABILITY)}, got {self.checkpoint_durability!r}"
            )
        object.__setattr__(self, "fn", functools.partial(_run_graph, self))
        super().__post_init__()


_savers: dict[str, StalwartSaver] = {}
_sized: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _size_executor(loop: asyncio.AbstractEventLoop, max_tasks: int) -> None:
    """Give the loop a default executor with room for every running task's sync node.

    LangGraph runs a plain ``def`` node in the loop's default executor, and its model
    call blocks that worker thread until the call, on the loop, is done. The call itself
    needs worker threads too (the spend ledger, the saver): with the default pool (cpus
    + 4 threads), as many sync nodes as threads would wait on calls that wait for a
    thread, forever. Threads are started on demand, so a large bound costs nothing idle.
    """
    if loop in _sized:
        return
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=2 * max_tasks + 16, thread_name_prefix="langgraph-node"
    )
    loop.set_default_executor(pool)
    _sized.add(loop)


_compiled: dict[tuple[int, str], Pregel[Any, Any, Any, Any]] = {}
_input_fields: dict[int, frozenset[str]] = {}


def _saver(url: str) -> StalwartSaver:
    saver = _savers.get(url)
    if saver is None:
        saver = _savers[url] = StalwartSaver(url)
    return saver


def _graph(agent: LangGraphAgent, saver: StalwartSaver) -> Pregel[Any, Any, Any, Any]:
    """The agent's graph with the stalwart saver as its checkpointer (built once)."""
    key = (id(agent.graph), saver.url)
    graph = _compiled.get(key)
    if graph is None:
        source = agent.graph
        if isinstance(source, StateGraph):
            graph = source.compile(checkpointer=saver)
        else:  # whatever checkpointer it was compiled with is replaced, not used
            graph = source.copy(update={"checkpointer": saver})
        _compiled[key] = graph
    return graph


def _store_url(agent: LangGraphAgent, ctx: TaskContext) -> str:
    if agent.checkpoints:
        return agent.checkpoints
    if ctx.resources.approvals is not None:  # the raw URL (a PostgreSQL one with its password)
        return ctx.resources.approvals.url
    return ctx.durable.store.url


_TEXT_KEYS = ("text", "message", "ticket", "question", "input")
"""Fields of a generic task input that carry the user's text (as an LLM agent reads them)."""


def _graph_input(
    agent: LangGraphAgent, task_input: Any, fields: Collection[str] = ("messages",)
) -> tuple[Any, str | None]:
    """The graph's input and the thread named by ``task_input``.

    ``fields`` are the graph's input fields. A string, or a dict none of whose fields the
    graph takes but with the user's text (``{"text": ...}``, as every stalwart agent
    accepts), becomes ``{"messages": [{"role": "user", "content": text}]}`` for a graph
    with a ``messages`` field; any other dict is the graph's input as it is.
    """
    if isinstance(task_input, str):
        return {"messages": [{"role": "user", "content": task_input}]}, None
    if isinstance(task_input, dict):
        data = dict(task_input)
        thread = data.pop(agent.thread_key, None)
        named = None if thread is None else str(thread)
        if "messages" in fields and not set(data) & set(fields):
            for key in _TEXT_KEYS:
                if isinstance(data.get(key), str):
                    return {"messages": [{"role": "user", "content": data[key]}]}, named
        return data, named
    return task_input, None


def _fields(graph: Pregel[Any, Any, Any, Any]) -> frozenset[str]:
    """The graph's input fields (from its input schema)."""
    found = _input_fields.get(id(graph))
    if found is None:
        schema = graph.get_input_jsonschema()
        found = _input_fields[id(graph)] = frozenset(schema.get("properties") or ())
    return found


async def _run_graph(agent: LangGraphAgent, ctx: TaskContext, task_input: Any) -> Any:
    os.environ.update(_TRACING_OFF)  # no LangSmith export from an agent process
    _size_executor(asyncio.get_running_loop(), agent.max_tasks)
    saver = _saver(_store_url(agent, ctx))
    graph = _graph(agent, saver)
    value, thread = _graph_input(agent, task_input, _fields(graph))
    thread_id = thread or ctx.task_id

    def start() -> dict[str, Any]:
        return {"thread_id": thread_id, "base": saver.latest(thread_id)}

    # a cut-off attempt's writes go first: a start that is not in the journal (a first
    # attempt, or one whose record was damaged and quarantined) must not see them
    await asyncio.to_thread(saver.forget_task, ctx.task_id)
    # where the thread stood when this task began: every attempt runs from there
    begun = await ctx.step("langgraph:thread", lambda: asyncio.to_thread(start))
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if begun["base"]:
        configurable["checkpoint_id"] = begun["base"]
    run = GraphRun(ctx, asyncio.get_running_loop(), agent.model, stream=agent.stream)
    writer, current = WRITER.set(ctx.task_id), RUN.set(run)
    # checkpoints in the task's own store: its next journal commit syncs them (the saver's)
    lazy = LAZY.set(agent.checkpoints is None)
    # "exit": no checkpoint per super-step (the journal, not LangGraph's checkpoint, is
    # what a resumed task trusts), one when the run ends
    durability: Any = agent.checkpoint_durability
    try:
        rounds = 0
        while True:
            config: Any = {"configurable": configurable, "recursion_limit": agent.recursion_limit}
            state = await graph.ainvoke(value, config, durability=durability)
            interrupts = state.get("__interrupt__") if isinstance(state, dict) else None
            if not interrupts:
                return {**_output(state, thread_id), "usage": ctx.usage.as_dict()}
            decision = await _decide(agent, ctx, interrupts[0], rounds)
            latest = await asyncio.to_thread(saver.latest, thread_id, task=ctx.task_id)
            configurable = {"thread_id": thread_id, "checkpoint_id": latest}
            value = Command(resume=agent.resume(decision))
            rounds += 1
    finally:
        try:  # a reservation taken ahead for a model call the graph did not make
            await ctx.release_ahead()
        finally:
            LAZY.reset(lazy)
            RUN.reset(current)
            WRITER.reset(writer)


def _json(value: Any) -> Any:
    def convert(obj: Any) -> Any:
        if isinstance(obj, BaseMessage):
            return convert_to_openai_messages(obj)
        return str(obj)

    return msgspec.to_builtins(value, enc_hook=convert, str_keys=True)


def _output(state: Any, thread_id: str) -> dict[str, Any]:
    """The task's result: the last message's text, the thread, and the final state (the
    caller adds ``usage``: model and tool calls, tokens and cost, as an LLM agent reports)."""
    answer = ""
    data = state if isinstance(state, dict) else {"value": state}
    messages = data.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], BaseMessage):
        answer = str(messages[-1].text)
    return {"status": "completed", "answer": answer, "thread_id": thread_id, "state": _json(data)}


async def _decide(agent: LangGraphAgent, ctx: TaskContext, held: Any, rounds: int) -> Any:
    """A person's decision on ``interrupt()`` number ``rounds`` of this task: journaled once
    made; until then the task parks (:class:`~stalwart.errors.TaskSuspended`)."""
    res = ctx.resources
    if res.approvals is None:
        raise ConfigError(
            f"LangGraphAgent {agent.name!r}: a node called interrupt(), which needs the "
            "approval queue; it exists when the agent has a side-effect tool or a taint "
            "policy naming tools (Security(taint=TaintPolicy(tools=...)))"
        )
    approvals = res.approvals
    payload = _json(held.value if isinstance(held, Interrupt) else held)
    arguments = {"interrupt": rounds, "value": payload}
    step = f"approval:{INTERRUPT_TOOL}"
    if ctx.durable.replaying:  # decided in an earlier attempt: the journal answers
        recorded: dict[str, Any] = await ctx.step(step, _never)
        return recorded
    entry: Approval = await asyncio.to_thread(
        approvals.submit,
        task_id=ctx.task_id,
        agent=res.agent,
        tool=INTERRUPT_TOOL,
        arguments=arguments,
        reason="the graph called interrupt()",
    )
    if entry.status == "pending":
        deadline = entry.created + res.security.taint.approval_deadline(INTERRUPT_TOOL)
        res.events.emit(
            "task_suspended", agent=res.agent, task_id=ctx.task_id, tool=INTERRUPT_TOOL,
            approval=entry.id, deadline=deadline,
        )  # fmt: skip
        raise TaskSuspended(
            f"task {ctx.task_id} waits for approval {entry.id} (a LangGraph interrupt)",
            waiting={
                "awaiting": "approval",
                "approval": entry.id,
                "tool": INTERRUPT_TOOL,
                "reason": "the graph called interrupt()",
                "deadline": deadline,
                "value": payload,
            },
        )
    decided = {"id": entry.id, "status": entry.status, "by": entry.decided_by}
    result: dict[str, Any] = await ctx.step(step, lambda: decided)
    return result


def _never() -> dict[str, Any]:
    raise AssertionError("a replayed approval step never runs")  # pragma: no cover
