"""What a task consumes (:class:`Usage`) and what its agent process holds for every task
it runs (:class:`Resources`): the task context's inputs and its running account."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from stalwart.agent._handover import HandOvers
from stalwart.guard import ApprovalQueue, Security, SpendLedger
from stalwart.llm import ModelClient, PriceTable
from stalwart.observe import EventBus
from stalwart.resilience import RateLimiter
from stalwart.runtime import AgentContext
from stalwart.tools import ToolRegistry

__all__ = ["Resources", "Usage"]


@dataclasses.dataclass
class Usage:
    """What a task has consumed so far (reported on its result)."""

    model_calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    fallbacks: int = 0
    denied_tool_calls: int = 0
    held_tool_calls: int = 0
    refused_tool_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "cost_usd": round(self.cost_usd, 8)}


@dataclasses.dataclass
class Resources:
    """What an agent process holds for its tasks (built once per process)."""

    agent: str
    models: Mapping[str, ModelClient]
    tools: ToolRegistry
    scopes: frozenset[str]
    callable_agents: frozenset[str]
    runtime: AgentContext | None
    events: EventBus
    security: Security = dataclasses.field(default_factory=Security)
    ledger: SpendLedger | None = None
    """Where spend is reserved and settled (None: budgets are not enforced)."""
    approvals: ApprovalQueue | None = None
    """Where held tool calls wait for a person (None: held calls are refused)."""
    prices: PriceTable = dataclasses.field(default_factory=PriceTable)
    rate_limiters: Mapping[str, RateLimiter] = dataclasses.field(default_factory=dict)
    """``"*"`` for the whole agent, else per model chain (see :func:`build_rate_limiters`)."""
    handovers: HandOvers | None = None
    """Where this process's hand-overs wait without holding a callee's worker (None: a
    hand-over is a plain call to the callee, which waits inside the call)."""
