"""What both red teams run on: the resolver in this process, a real store, recording tools.

:class:`Harness` is the helpdesk's :class:`~stalwart.chaos._harness.AgentHarness`: the
resolver (as the red team's ``agent``, with its recording tools), the model chain it is
given, a real SQLite journal and approval queue; each ticket is sent as the helpdesk's
task input (its text, sender and customer) and its status written back.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from stalwart.agent import LLMAgent
from stalwart.chaos._harness import AgentHarness
from stalwart.durable import TaskResult
from stalwart.guard import RedactingEventBus, Security
from stalwart.llm import ModelClient

__all__ = ["Harness"]


class Item(Protocol):
    """A ticket of a red-team run: what is sent, and where its status is written."""

    text: str
    sender: str
    customer: str
    status: str


TicketT = TypeVar("TicketT", bound=Item)


class Harness(AgentHarness[TicketT]):
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
        super().__init__(
            workdir, name=name, agent=agent, models=models, tools=agent.tools,
            security=security, events=events,
        )  # fmt: skip

    def task_input(self, item: TicketT) -> Any:
        return {"text": item.text, "from": item.sender, "customer": item.customer}

    def finished(self, item: TicketT, result: TaskResult) -> None:
        item.status = str((result.result or {}).get("status", result.status))
