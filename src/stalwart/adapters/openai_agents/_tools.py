"""The SDK's function tools as stalwart tools: guarded, journaled, ledgered.

Declaring an SDK agent to stalwart (:class:`OpenAIAgentsAgent`) *binds* every
``FunctionTool`` reachable from it (its tools and those of the agents it hands off
to): each becomes a stalwart :class:`~stalwart.tools.Tool` (scopes, deadline,
breaker, side effect or not: :class:`ToolPolicy`), and the ``FunctionTool``'s
``on_invoke_tool`` is wrapped so that, inside a stalwart task, the SDK's call goes
through :meth:`TaskContext.call_tool`: authorized against the agent's scopes, checked
by the taint policy, held for approval when the policy says so, run as a journaled
step (a side-effect tool through the idempotency ledger), and answered from the
journal on replay. Outside a stalwart task (a notebook, a unit test) the wrapper
calls the tool's own function: the agent's code behaves as before.
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import msgspec
from agents import Agent, FunctionTool
from agents.tool_context import ToolContext

from stalwart.agent import TaskContext
from stalwart.errors import ConfigError, InvalidMessage
from stalwart.llm import ToolSpec
from stalwart.tools import Tool

__all__ = [
    "RunBinding",
    "ToolPolicy",
    "bind_tools",
    "current_idempotency_key",
    "function_tools",
    "run_binding",
    "unbound_tools",
]

Invoke = Callable[[ToolContext[Any], str], Awaitable[Any]]


@dataclasses.dataclass(frozen=True)
class ToolPolicy:
    """How stalwart treats one SDK function tool (the tool's code is unchanged).

    ``scopes`` are the permissions a call needs (the agent must be granted them);
    ``side_effect=True`` runs each call at most once through the idempotency ledger
    (``deduplicates=True``: the service ignores a repeated key, so an interrupted call
    may be retried with it; the key is :func:`current_idempotency_key` inside the
    tool); ``reconcile(key)`` tells what an interrupted call did; ``double`` runs
    instead of the tool while ``stalwart verify`` drives the app (called with the
    arguments the model sent, as keywords: the tool's parameters without its context).
    ``timeout`` is the call's deadline (5-30 s).
    """

    scopes: Sequence[str] = ()
    side_effect: bool = False
    deduplicates: bool = False
    timeout: float = 15.0
    alternatives: Sequence[str] = ()
    reconcile: Callable[[str], Any] | None = None
    double: Callable[..., Any] | None = None


@dataclasses.dataclass
class RunBinding:
    """The stalwart task an SDK run belongs to (set for the run's duration)."""

    task: TaskContext
    approved: set[str] = dataclasses.field(default_factory=set)
    """Call ids a person approved (SDK ``needs_approval``): not held a second time."""


_RUN: contextvars.ContextVar[RunBinding | None] = contextvars.ContextVar(
    "stalwart_openai_agents_run", default=None
)
_TOOL_CONTEXT: contextvars.ContextVar[ToolContext[Any] | None] = contextvars.ContextVar(
    "stalwart_openai_agents_tool_context", default=None
)
_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "stalwart_openai_agents_key", default=None
)

_ORIGINAL: dict[int, tuple[FunctionTool, Invoke]] = {}
"""id -> (a bound FunctionTool, its own ``on_invoke_tool``): binding twice wraps once. The
tool is held, so its id is never reused while the entry exists (tools are module-level
objects that live as long as the process anyway)."""


def run_binding() -> contextvars.ContextVar[RunBinding | None]:
    """The context variable holding the current run's :class:`RunBinding`."""
    return _RUN


def current_idempotency_key() -> str | None:
    """Inside a side-effect tool run by stalwart: the call's idempotency key (the same on
    every attempt of the call; pass it to the service, e.g. as ``Idempotency-Key``).
    None elsewhere."""
    return _KEY.get()


def _walk(agent: Agent[Any]) -> Iterator[Agent[Any]]:
    """``agent`` and every agent reachable through its handoffs (cycles allowed)."""
    seen: set[int] = set()
    stack = [agent]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(h for h in current.handoffs if isinstance(h, Agent))


def function_tools(agent: Agent[Any]) -> dict[str, FunctionTool]:
    """The function tools of ``agent`` and of the agents it hands off to, by name.

    Agents-as-tools (``Agent.as_tool``) are left out: they run a nested SDK run whose
    model calls are journaled one by one, so the tool itself is not one step."""
    found: dict[str, FunctionTool] = {}
    for each in _walk(agent):
        if not isinstance(each.model, str | None):
            raise ConfigError(
                f"SDK agent {each.name!r} has a Model object as its model; a run hosted by "
                "stalwart sends every model call through the app's model chains: give it a "
                "chain name (or no model) instead"
            )
        for tool in each.tools:
            if not isinstance(tool, FunctionTool) or tool._is_agent_tool:
                continue
            other = found.get(tool.name)
            if other is not None and other is not tool:
                raise ConfigError(
                    f"two different SDK function tools are named {tool.name!r}; stalwart "
                    "journals and authorizes tools by name: rename one (name_override=...)"
                )
            found[tool.name] = tool
    return found


@dataclasses.dataclass(eq=False)
class SDKTool(Tool):
    """A stalwart tool whose function is an SDK ``FunctionTool`` (its schema is the SDK's;
    the SDK validates the arguments when it invokes the tool)."""

    schema: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The SDK tool's JSON schema of its arguments."""

    def validate(self, arguments: Any) -> dict[str, Any]:
        if not isinstance(arguments, dict):
            raise InvalidMessage(f"arguments of {self.name!r} must be a JSON object")
        return {"arguments": arguments}

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.schema)


def _jsonable(value: Any) -> Any:
    """A tool's output as JSON data for the journal (else its text, as the model sees it)."""
    try:
        data: Any = msgspec.json.decode(msgspec.json.encode(value))
    except (TypeError, msgspec.EncodeError):
        return str(value)
    return data


def _sdk_tool(sdk: FunctionTool, policy: ToolPolicy) -> SDKTool:
    original = _ORIGINAL[id(sdk)][1]

    async def invoke(arguments: dict[str, Any], idempotency_key: str | None = None) -> Any:
        context = _TOOL_CONTEXT.get()
        if context is None:  # pragma: no cover - only the bound wrapper calls this
            raise ConfigError(f"SDK tool {sdk.name!r} was called outside an SDK run")
        token = _KEY.set(idempotency_key)
        try:
            return _jsonable(await original(context, json.dumps(arguments)))
        finally:
            _KEY.reset(token)

    double = None
    if policy.double is not None:
        user_double = policy.double

        async def double(arguments: dict[str, Any], idempotency_key: str | None = None) -> Any:
            value = user_double(**arguments)
            return _jsonable(await value if inspect.isawaitable(value) else value)

    return SDKTool(
        fn=invoke,
        name=sdk.name,
        description=sdk.description or "",
        scopes=frozenset(policy.scopes),
        timeout=policy.timeout,
        side_effect=policy.side_effect,
        deduplicates=policy.deduplicates,
        alternatives=tuple(policy.alternatives),
        reconcile=policy.reconcile,
        double=double,
        schema=dict(sdk.params_json_schema),
    )


def _wrap(sdk: FunctionTool) -> None:
    """Route ``sdk``'s invocations through the current run's task, if there is one."""
    if id(sdk) in _ORIGINAL:
        return
    original = sdk.on_invoke_tool
    _ORIGINAL[id(sdk)] = (sdk, original)
    name = sdk.name

    async def on_invoke_tool(context: ToolContext[Any], raw: str) -> Any:
        binding = _RUN.get()
        if binding is None:  # not in a stalwart task: the tool as the SDK would run it
            return await original(context, raw)
        try:
            arguments = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            return f"invalid arguments for {name}: not JSON ({exc}); send a JSON object"
        call_id = context.tool_call_id
        token = _TOOL_CONTEXT.set(context)
        try:
            result = await binding.task.call_tool(
                name, arguments, proposed=call_id not in binding.approved, call_id=call_id
            )
        finally:
            _TOOL_CONTEXT.reset(token)
        return result.value if result.ok else result.content()

    sdk.on_invoke_tool = on_invoke_tool


def unbound_tools(agent: Agent[Any], registered: Sequence[str]) -> list[str]:
    """The names of ``agent``'s function tools that are not bound, or not among the
    stalwart agent's ``registered`` tools (their calls would bypass the guard)."""
    return sorted(
        name
        for name, tool in function_tools(agent).items()
        if id(tool) not in _ORIGINAL or name not in registered
    )


def bind_tools(agent: Agent[Any], policies: Mapping[str, ToolPolicy]) -> list[Tool]:
    """Bind ``agent``'s function tools (see the module docstring); the stalwart tools."""
    tools = function_tools(agent)
    unknown = sorted(set(policies) - set(tools))
    if unknown:
        raise ConfigError(
            f"tool policies name tools the SDK agent {agent.name!r} does not have: {unknown} "
            f"(its function tools: {sorted(tools)})"
        )
    bound: list[Tool] = []
    for name, sdk in tools.items():
        if sdk.timeout_seconds is not None:
            # The SDK runs such a tool in a task of its own and cancels it when the timer
            # fires: from outside stalwart's journal, part-way through a side effect's
            # ledger record (left "started", with no outcome), and with an outcome ("timed
            # out") that no journal holds, so a resumed run would see the tool's recorded
            # answer where the first run saw a timeout. stalwart's own deadline ends the
            # call inside the journal, which records the failure.
            suggested = min(30.0, max(5.0, sdk.timeout_seconds))
            raise ConfigError(
                f"SDK tool {name!r} of agent {agent.name!r} has timeout_seconds="
                f"{sdk.timeout_seconds:g}: the SDK's timer would cancel the call outside "
                "stalwart's journal (a side effect left started with no outcome, a resumed "
                "run that differs from the first). Remove it from the tool and give the "
                f"deadline to stalwart: tool_policies={{{name!r}: "
                f"ToolPolicy(timeout={suggested:g})}} (5-30 s)"
            )
        _wrap(sdk)
        bound.append(_sdk_tool(sdk, policies.get(name, ToolPolicy())))
    return bound
