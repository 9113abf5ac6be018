"""The graph run in progress: what the model and tool wrappers reach through a context variable.

LangGraph calls a node's model and tools deep inside its own loop, with no way to
pass stalwart's :class:`~stalwart.agent.TaskContext` down. The adapter sets the run
in a context variable before it starts the graph; LangGraph copies the context into
every node it runs (on the event loop or, for a sync node, in a worker thread), so
the wrappers find it there.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from stalwart.agent import TaskContext
from stalwart.errors import ConfigError, NonDeterminismError

__all__ = ["RUN", "GraphRun", "current_run"]


@dataclasses.dataclass
class GraphRun:
    """One stalwart task running one graph."""

    ctx: TaskContext
    loop: asyncio.AbstractEventLoop
    model: str | None
    """The model chain a :class:`~stalwart.adapters.langgraph.ChatModel` without its own uses."""
    stream: bool = False
    """Model answers' text goes to the task's event stream as it is generated."""
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    """Journaled calls of parallel branches take journal positions one at a time."""
    model_calls: int = 0

    def digest(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """A fingerprint of a model request (journaled with its reply)."""
        canon = json.dumps(list(messages), sort_keys=True, default=str).encode()
        return hashlib.sha256(canon).hexdigest()[:16]

    def check_replayed(self, node: str, sent: str, reply: Mapping[str, Any], n: int) -> None:
        """Raise :class:`~stalwart.errors.NonDeterminismError` naming the call if the reply
        was recorded for a different request than the one just sent."""
        recorded = reply.get("request_digest")
        if recorded is not None and recorded != sent:
            raise NonDeterminismError(
                f"task {self.ctx.task_id!r}: LangGraph node {node!r}, model call #{n}, sends a "
                f"different request than the journal recorded (digest {sent}; recorded "
                f"{recorded}). The graph's code or its inputs changed in a way that breaks "
                "replay: finish old tasks on the old code"
            )


RUN: contextvars.ContextVar[GraphRun | None] = contextvars.ContextVar(
    "stalwart_langgraph_run", default=None
)


def current_run(what: str) -> GraphRun:
    """The run in progress, or a ConfigError saying ``what`` works only inside one."""
    run = RUN.get()
    if run is None:
        raise ConfigError(
            f"{what} runs only inside a stalwart task: declare the graph as "
            "LangGraphAgent(name=..., graph=...) in an App and run it with `stalwart run` "
            "(outside stalwart, use LangChain's own chat model and tools)"
        )
    return run


def run_sync(run: GraphRun, coro: Any, what: str, *, wait: bool = True) -> Any:
    """Run ``coro`` on the task's loop from a sync node's worker thread and wait for it
    (``wait=False``: its ``concurrent.futures.Future``, for a caller reading as it goes)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # the coroutine is a stalwart model or tool call, each under its own deadline
        future = asyncio.run_coroutine_threadsafe(coro, run.loop)
        if not wait:
            return future
        return future.result()  # no-deadline: the call it waits on has its own deadline
    coro.close()
    raise ConfigError(
        f"{what} was called synchronously on the event loop (it would block the loop): "
        "use `await model.ainvoke(...)` (or `model.astream`) in an async node, or make the "
        "node a plain def"
    )
