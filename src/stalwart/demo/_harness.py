"""What both red teams run on: the resolver in this process, a real store, recording tools.

:class:`Harness` holds the resolver (as the red team's ``agent``, with its recording
tools), the model chain it is given, a real SQLite journal and approval queue, and runs
tickets through :func:`~stalwart.agent.run_llm_agent` exactly as an agent process would;
each ticket is the current one (``current``) while it runs, so the recording tools know
whose calls they see.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from stalwart.agent import LLMAgent, Resources, TaskContext, run_llm_agent
from stalwart.durable import Runner, SQLiteStore
from stalwart.guard import ApprovalQueue, RedactingEventBus, Security
from stalwart.llm import ModelClient
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry

__all__ = ["Harness"]


class Item(Protocol):
    """A ticket of a red-team run: what is sent, and where its status is written."""

    text: str
    sender: str
    customer: str
    status: str


TicketT = TypeVar("TicketT", bound=Item)


class Harness:
    """The resolver with ``models``, a real store and recording tools (module doc)."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str,
        agent: LLMAgent,
        models: Mapping[str, ModelClient],
        security: Security,
        events: RedactingEventBus,
    ) -> None:
        db = workdir / f"{name}.db"
        self.agent = agent
        self.models = models
        self.store = SQLiteStore(str(db))
        self.approvals = ApprovalQueue(f"sqlite:///{db}")
        self.events = events  # what the tools and models reported (the runs count it)
        self.resources = Resources(
            agent=agent.name,
            models=models,
            tools=ToolRegistry(agent.tools, breakers=BreakerRegistry()),
            scopes=frozenset(agent.scopes),
            callable_agents=frozenset(),
            runtime=None,
            events=self.events,
            security=security,
            approvals=self.approvals,
        )
        self.runner = Runner(self.store, owner=name, events=self.events)

    async def run(
        self,
        items: Sequence[TicketT],
        current: contextvars.ContextVar[TicketT],
        concurrency: int = 16,
    ) -> None:
        """Each item through the resolver (at most ``concurrency`` at once); its status set."""
        await self.store.open()
        gate = asyncio.Semaphore(concurrency)

        async def workflow(ctx: Any, value: Any) -> Any:
            return await run_llm_agent(
                TaskContext(ctx, self.resources, model="main"), self.agent, value
            )

        async def one(item: TicketT) -> None:
            async with gate:
                current.set(item)  # this task's context only: the tools see their ticket
                task_input = {"text": item.text, "from": item.sender, "customer": item.customer}
                task_id = await self.runner.submit(self.agent.name, task_input)
                result = await self.runner.run(task_id, workflow)
                item.status = str((result.result or {}).get("status", result.status))

        await asyncio.gather(*(one(i) for i in items))

    async def close(self) -> None:
        for model in self.models.values():
            await model.aclose()
        await self.store.close()
        self.approvals.close()
