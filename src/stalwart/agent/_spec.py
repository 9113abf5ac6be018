"""What a user declares: agents (model + tools + prompt, or plain Python) and the app."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stalwart.agent._profile import VerifyProfile
from stalwart.errors import ConfigError
from stalwart.guard import Security
from stalwart.llm import Price, PriceTable, Provider
from stalwart.llm.sim import Scenario
from stalwart.runtime import Restart
from stalwart.tools import Tool

if TYPE_CHECKING:
    from stalwart.agent._context import TaskContext

__all__ = ["App", "LLMAgent", "PythonAgent"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{kind} name {name!r} must start with a letter and use letters, digits, _ . -"
        )


@dataclasses.dataclass(frozen=True)
class _AgentBase:
    name: str
    max_tasks: int = 1000
    """Tasks this agent's process runs at once. A task waiting on a model call, a tool or
    a hand-over costs an asyncio task and its state, not a worker, so the default lets
    one process keep a thousand slow model calls in flight; lower it to bound the memory
    of tasks with large state. When it binds, ``stalwart_agent_at_capacity`` counts."""
    max_running: int | None = None
    """Tasks of this agent running at once across every node sharing the store
    (a cluster-wide limit, enforced when a task is claimed); None: no limit."""
    restart: Restart = "permanent"
    memory_limit_mb: float | None = None
    task_timeout: float = 600.0
    """Seconds a task may run in all; past it the task fails with a clear reason (a
    step that blocks the event loop past it gets its process killed by the node)."""
    quarantine_after: int | None = None
    """Kills of this agent's process charged to one task (its step hung the process,
    overran ``memory_limit_mb``) before that task ends ``quarantined`` instead of
    running again. None (the default): 3, or the app's ``intensity`` if that is lower.
    At most the app's ``intensity``, so one poison task never makes the supervisor give
    up (see docs/durable.md, "Poison tasks"); :meth:`App.quarantine_limit` is the value
    in force."""
    agents: tuple[str, ...] = ()
    """Other agents this one may call (``ctx.call_agent``)."""
    security: Security = dataclasses.field(default_factory=Security)
    """Input limits, taint policy, output policy and budget (see docs/security.md)."""

    def __post_init__(self) -> None:
        _check_name("agent", self.name)
        if not isinstance(self.max_tasks, int) or not 1 <= self.max_tasks <= 100_000:
            raise ConfigError(f"agent {self.name!r}: max_tasks must be an int in 1..100000")
        if self.max_running is not None and (
            not isinstance(self.max_running, int)
            or isinstance(self.max_running, bool)
            or self.max_running < 1
        ):
            raise ConfigError(
                f"agent {self.name!r}: max_running must be a positive int, got {self.max_running!r}"
            )
        if not 0 < self.task_timeout <= 86_400:
            raise ConfigError(f"agent {self.name!r}: task_timeout must be in (0, 86400] s")
        q = self.quarantine_after
        if q is not None and (not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 100):
            raise ConfigError(
                f"agent {self.name!r}: quarantine_after must be an int in 1..100, got {q!r}"
            )


@dataclasses.dataclass(frozen=True)
class LLMAgent(_AgentBase):
    """An agent whose loop is: model -> authorized tool calls -> results -> model ...

    ``model`` names a chain in :attr:`App.models`. ``tools`` are the tools it is
    offered and ``scopes`` what it is granted: a tool call needing a scope
    outside ``scopes`` is refused by the runtime, whatever the model says.
    ``history_tokens`` bounds the conversation sent to the model (sliding
    window; the system prompt and tool call/result pairs are kept).
    """

    model: str = "default"
    system: str = "You are a helpful agent."
    tools: Sequence[Tool] = ()
    scopes: Sequence[str] = ()
    max_steps: int = 50
    history_tokens: int = 8000
    max_tokens: int = 1024
    stream: bool = False
    """Stream each model answer as it is generated to ``GET /v1/tasks/{id}/events``
    (server-sent events) and ``stalwart task watch``; the journal still records whole
    answers, so a resumed task's stream continues without repeating what a client got.
    See docs/models.md, "Streaming to callers"."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "tools", tuple(self.tools))
        object.__setattr__(self, "scopes", tuple(self.scopes))
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ConfigError(f"agent {self.name!r}: two tools share a name in {names}")
        if not 1 <= self.max_steps <= 10_000:
            raise ConfigError(f"agent {self.name!r}: max_steps must be in 1..10000")


@dataclasses.dataclass(frozen=True)
class PythonAgent(_AgentBase):
    """An agent that is an async function of a :class:`TaskContext` and the task input.

    Use ``ctx.step``, ``ctx.call_model``, ``ctx.call_tool`` and
    ``ctx.call_agent`` so every effect is journaled and a resumed task replays
    exactly; code from other frameworks can be wrapped this way.
    """

    fn: Callable[[TaskContext, Any], Awaitable[Any]] | None = None
    model: str | None = None
    tools: Sequence[Tool] = ()
    scopes: Sequence[str] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fn is None:
            raise ConfigError(f"PythonAgent {self.name!r} needs fn=async def(ctx, input)")
        object.__setattr__(self, "tools", tuple(self.tools))
        object.__setattr__(self, "scopes", tuple(self.scopes))


AgentDef = LLMAgent | PythonAgent


@dataclasses.dataclass(frozen=True)
class App:
    """A deployable set of agents with their models, store and supervision.

    ``models`` maps a chain name to its ordered model strings (``sim:strong``…);
    ``providers`` says where each provider lives (real ones need a key);
    ``sim=True`` makes the node start the simulated world and provide ``sim``
    (its URL is ``STALWART_SIM_URL`` in agent processes, for tools to reach the
    simulated services).
    ``store`` is a store URL (``sqlite:///path.db``, ``postgresql://…``).
    """

    agents: Sequence[AgentDef]
    models: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    providers: Mapping[str, Provider] = dataclasses.field(default_factory=dict)
    store: str = "sqlite:///stalwart.db"
    prices: Mapping[str, Price] = dataclasses.field(default_factory=dict)
    """Prices per model (``"openai:gpt-4o": Price(2.5, 10.0)``) over the built-in table;
    they price cost reports and budget reservations alike."""
    sim: bool = False
    scenario: Scenario | None = None
    """Rules for the simulated models when ``sim=True``."""
    intensity: int = 5
    period: float = 60.0
    max_pending: int | None = 1000
    """Admission: tasks that may wait (stored, not started) per agent; one more is refused
    (``Overloaded``; HTTP 429 with ``Retry-After``). None: no limit."""
    max_pending_node: int | None = 10_000
    """Admission: tasks that may wait across every agent of the store. None: no limit."""
    lease_seconds: float = 4.0
    """How long a claim lasts without renewal (renewed every third of it). A dead
    node's tasks move after about this long; a runner that cannot renew stops at
    two thirds of it. Shorter fails over faster, but risks taking over a task whose
    runner is only slow (fencing keeps that safe, at the cost of redone work)."""
    entry: str | None = None
    """The agent that receives the app's tasks (default: the first agent)."""
    redteam: str | None = None
    """``module:function()`` running the injection corpus against this app's agents with a
    model that obeys injections (for ``stalwart verify`` SE-2); returns its counts."""
    workload: str | None = None
    """``module:function(count, seed)`` returning realistic task inputs, for ``stalwart
    verify``, load and chaos runs to drive the app with."""
    verify: VerifyProfile = dataclasses.field(default_factory=VerifyProfile)
    """How ``stalwart verify`` may drive and fault the app (see :class:`VerifyProfile`);
    its ``workload`` overrides ``workload``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))
        names = [a.name for a in self.agents]
        if not names:
            raise ConfigError("an App needs at least one agent")
        if len(set(names)) != len(names):
            raise ConfigError(f"agent names must be unique, got {names}")
        for agent in self.agents:
            chain = agent.model
            if chain is not None and chain not in self.models:
                raise ConfigError(
                    f"agent {agent.name!r} uses model chain {chain!r}, which App.models does "
                    f"not define (defined: {sorted(self.models)})"
                )
            if agent.quarantine_after is not None and agent.quarantine_after > self.intensity:
                raise ConfigError(
                    f"agent {agent.name!r}: quarantine_after={agent.quarantine_after} exceeds "
                    f"the app's intensity={self.intensity}: one poison task could make the "
                    "supervisor give up (and the node exit) before it is quarantined; "
                    "lower quarantine_after or raise intensity"
                )
            unknown = sorted(set(agent.agents) - set(names))
            if unknown:
                raise ConfigError(f"agent {agent.name!r} may call unknown agents {unknown}")
        if self.entry is not None and self.entry not in names:
            raise ConfigError(
                f"App.entry names no agent of the app: {self.entry!r} (its agents: {names})"
            )
        for what, limit in (("max_pending", self.max_pending),
                            ("max_pending_node", self.max_pending_node)):  # fmt: skip
            if limit is not None and (
                not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
            ):
                raise ConfigError(f"App.{what} must be a positive int or None, got {limit!r}")
        for chain, specs in self.models.items():
            if not specs:
                raise ConfigError(f"model chain {chain!r} is empty")
        if self.verify.workload is not None:
            object.__setattr__(self, "workload", self.verify.workload)
        tools = {t.name for a in self.agents for t in a.tools}
        unknown_tools = sorted(set(self.verify.tools) - tools)
        if unknown_tools:
            raise ConfigError(
                f"the verify profile names tools no agent has: {unknown_tools} (known: "
                f"{sorted(tools)})"
            )

    def price_table(self) -> PriceTable:
        """The prices of this app's models: ``prices`` over the built-in table and the
        genai-prices data, with every ``self_hosted`` provider's models free."""
        free = [name for name, p in self.providers.items() if p.self_hosted]
        return PriceTable(self.prices, self_hosted=free)

    def check_prices(self) -> None:
        """Raise a :class:`ConfigError` naming ``App(prices=...)`` for the first model of
        ``models`` that has no price (a node checks this before it starts)."""
        table = self.price_table()
        for specs in self.models.values():
            for spec in specs:
                table.price(spec)

    @property
    def entry_agent(self) -> str:
        """The name of the agent that receives the app's tasks: ``entry``, else the first
        agent (what verify, load, chaos, soak and the red team send their tasks to)."""
        return self.entry or self.agents[0].name

    def agent(self, name: str) -> AgentDef:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise ConfigError(f"no agent named {name!r} in this app ({[a.name for a in self.agents]})")

    def quarantine_limit(self, name: str) -> int:
        """Kills charged to one task of agent ``name`` before it is quarantined: its
        ``quarantine_after``, or by default 3 capped at this app's ``intensity``."""
        explicit = self.agent(name).quarantine_after
        return explicit if explicit is not None else max(1, min(3, self.intensity))


def check_callable(fn: Any) -> None:
    if not callable(fn):
        raise ConfigError(f"{fn!r} is not callable")
