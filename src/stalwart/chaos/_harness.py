"""An agent in this process, as a red team runs it: the models and tools it is given, a
real SQLite journal and approval queue, and each item through the agent's own code.

:class:`AgentHarness` runs an item's task through :func:`~stalwart.agent.run_llm_agent`
(an ``LLMAgent``) or the agent's own function between its guarded input and output (a
``PythonAgent``), exactly as an agent process would; each item is the current one (the
``current`` context variable) while it runs, so recording tools know whose calls they see.
A subclass says what an item's task input is (:meth:`~AgentHarness.task_input`) and what
its ending writes back into it (:meth:`~AgentHarness.finished`). The red team of any app
(``stalwart.chaos._redteam``) and an app's own (the demo's, ``stalwart.demo.redteam``) are its two.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from stalwart.agent import LLMAgent, PythonAgent, Resources, TaskContext, run_llm_agent
from stalwart.agent._guarded import finish_output, prepare_input
from stalwart.durable import Runner, SQLiteStore, TaskResult
from stalwart.guard import ApprovalQueue, RedactingEventBus, Security
from stalwart.llm import ModelClient
from stalwart.resilience import BreakerRegistry
from stalwart.tools import Tool, ToolRegistry

__all__ = ["AgentHarness"]

ItemT = TypeVar("ItemT")


class AgentHarness(abc.ABC, Generic[ItemT]):
    """``agent`` with ``models`` and ``tools``, a real store under ``workdir`` (module doc)."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str,
        agent: LLMAgent | PythonAgent,
        models: Mapping[str, ModelClient],
        tools: Sequence[Tool],
        security: Security,
        events: RedactingEventBus,
    ) -> None:
        db = workdir / f"{name}.db"
        self.agent = agent
        self.models = models
        self.events = events  # what the tools and models reported (the runs count it)
        self.store = SQLiteStore(str(db))
        self.approvals = ApprovalQueue(f"sqlite:///{db}")
        self.resources = Resources(
            agent=agent.name,
            models=models,
            tools=ToolRegistry(tools, breakers=BreakerRegistry()),
            scopes=frozenset(agent.scopes),
            callable_agents=frozenset(),
            runtime=None,
            events=self.events,
            security=security,
            approvals=self.approvals,
        )
        self.runner = Runner(self.store, owner=name, events=self.events)

    @abc.abstractmethod
    def task_input(self, item: ItemT) -> Any:
        """The task input ``item`` is submitted as."""

    @abc.abstractmethod
    def finished(self, item: ItemT, result: TaskResult) -> None:
        """Write how ``item``'s task ended into it."""

    async def workflow(self, ctx: Any, value: Any) -> Any:
        """The agent's own code on one task input, as its agent process runs it."""
        tctx = TaskContext(ctx, self.resources, model=self.agent.model)
        if isinstance(self.agent, LLMAgent):
            return await run_llm_agent(tctx, self.agent, value)
        assert self.agent.fn is not None
        out = await self.agent.fn(tctx, prepare_input(tctx, value))
        return await asyncio.to_thread(finish_output, tctx, out)

    async def run(
        self,
        items: Sequence[ItemT],
        current: contextvars.ContextVar[ItemT],
        concurrency: int = 16,
    ) -> None:
        """Each item's task through the agent (at most ``concurrency`` at once)."""
        await self.store.open()
        gate = asyncio.Semaphore(concurrency)

        async def one(item: ItemT) -> None:
            async with gate:
                current.set(item)  # this task's context only: the tools see their item
                task_id = await self.runner.submit(self.agent.name, self.task_input(item))
                self.finished(item, await self.runner.run(task_id, self.workflow))

        await asyncio.gather(*(one(i) for i in items))

    def guard_counts(self) -> dict[str, int]:
        """Tool calls the guard held for approval, refused, and denied by scope."""
        return {
            kind: len(self.events.recent(f"tool_call_{kind}"))
            for kind in ("held", "refused", "denied")
        }

    async def close(self) -> None:
        for model in self.models.values():
            await model.aclose()
        await self.store.close()
        self.approvals.close()
