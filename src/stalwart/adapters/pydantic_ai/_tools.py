"""A hosted agent's tools: each Pydantic AI function tool becomes a stalwart tool.

The user's tool functions stay as Pydantic AI wrote them (``@agent.tool``,
``@agent.tool_plain``, ``Agent(tools=[...])``). For each, a :class:`ToolPolicy`
says what stalwart needs to know that Pydantic AI does not: the scopes it needs and
whether it has side effects. From them the adapter builds a
:class:`~stalwart.tools.Tool` with the same parameters (so stalwart validates, and the
taint policy reads, the same arguments) whose body runs the Pydantic AI tool through
its own toolset (``RunContext`` and dependencies included).

At run time :class:`GuardedToolset` wraps the run's toolset: every call the model
proposes goes through :meth:`TaskContext.call_tool <stalwart.agent.TaskContext.call_tool>`,
so scopes, the taint policy and approvals apply, a read tool's result is a journaled
step and a side-effect tool runs through the idempotency ledger. A tool stalwart does
not know (an MCP server's, a dynamic toolset's) is denied: the agent fails closed.
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic_ai.exceptions import ApprovalRequired, CallDeferred, ModelRetry
from pydantic_ai.tools import RunContext
from pydantic_ai.tools import Tool as PydanticTool
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool
from pydantic_core import to_jsonable_python

from stalwart.agent import TaskContext
from stalwart.errors import ConfigError
from stalwart.tools import Tool

__all__ = ["GuardedToolset", "ToolPolicy", "function_tools", "idempotency_key", "stalwart_tool"]

_MARK = "$stalwart.pydantic_ai"
"""Key of a journaled tool value that stands for an exception Pydantic AI must see
(``ModelRetry``): replayed, it raises again, so the run takes the same path."""


@dataclasses.dataclass(frozen=True)
class ToolPolicy:
    """What stalwart needs to know about one Pydantic AI tool.

    ``scopes``: the permissions it needs (the agent must be granted all of them).
    ``side_effect``: it changes the world (sends, pays, writes): it runs through the
    idempotency ledger, at most once, and the taint policy treats it as sensitive;
    ``deduplicates``: the service it calls ignores a repeated idempotency key, so an
    interrupted call may be repeated with the same key (exactly once). Read the key in
    the tool with :func:`idempotency_key`. ``timeout`` (5-30 s), ``alternatives``,
    ``reconcile`` and ``double`` are :func:`stalwart.tools.tool`'s.
    """

    scopes: Sequence[str] = ()
    side_effect: bool = False
    deduplicates: bool = False
    timeout: float = 15.0
    alternatives: Sequence[str] = ()
    reconcile: Callable[[str], Any] | None = None
    double: Callable[..., Any] | None = None


@dataclasses.dataclass(frozen=True)
class _Call:
    """The Pydantic AI call a stalwart tool body runs (set around ``call_tool``)."""

    toolset: AbstractToolset[Any]
    name: str
    arguments: dict[str, Any]
    ctx: RunContext[Any]
    tool: ToolsetTool[Any]


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "pydantic_ai_call", default=None
)
_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("pydantic_ai_key", default=None)


def idempotency_key(ctx: RunContext[Any] | None = None) -> str:
    """The idempotency key of the side-effect tool call running now.

    Hosted by stalwart, the ledger's key: derived from the task and the step, the same
    on every attempt. Pass it to the service (an ``Idempotency-Key`` header) so a
    repeated call cannot act twice. Run bare (the agent outside stalwart, in a notebook
    or a test), the key is ``"<run id>:<tool call id>"`` of ``ctx``; without ``ctx`` that
    raises :class:`~stalwart.errors.ConfigError`.
    """
    key = _KEY.get()
    if key is not None:
        return key
    if ctx is not None and ctx.run_id and ctx.tool_call_id:
        return f"{ctx.run_id}:{ctx.tool_call_id}"
    raise ConfigError(
        "idempotency_key() is only set inside a side-effect tool of a Pydantic AI agent "
        "hosted by stalwart (declare it ToolPolicy(side_effect=True)); pass the tool's "
        "RunContext, idempotency_key(ctx), to get a key when the agent runs bare"
    )


def function_tools(toolsets: Sequence[AbstractToolset[Any]]) -> dict[str, PydanticTool[Any]]:
    """The function tools of an agent's toolsets, by name."""
    found: dict[str, PydanticTool[Any]] = {}
    for toolset in toolsets:
        if isinstance(toolset, FunctionToolset):
            found.update(toolset.tools)
    return found


def _signature(
    tool: PydanticTool[Any], side_effect: bool
) -> tuple[inspect.Signature, dict[str, Any]]:
    """The tool function's parameters (its ``RunContext`` aside), keyword-only, with
    evaluated type hints; a side-effect tool also takes ``idempotency_key``."""
    fn = tool.function
    hints = typing.get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())
    if tool.takes_ctx:
        params = params[1:]
    out: list[inspect.Parameter] = []
    annotations: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ConfigError(f"tool {tool.name!r}: *args/**kwargs cannot be hosted by stalwart")
        hint = hints.get(p.name, Any)
        annotations[p.name] = hint
        out.append(p.replace(kind=p.KEYWORD_ONLY, annotation=hint))
    if side_effect:
        annotations["idempotency_key"] = str
        out.append(
            inspect.Parameter("idempotency_key", inspect.Parameter.KEYWORD_ONLY, annotation=str)
        )
    return inspect.Signature(out), annotations


def stalwart_tool(tool: PydanticTool[Any], policy: ToolPolicy) -> Tool:
    """The stalwart tool that runs Pydantic AI tool ``tool`` under ``policy``."""
    name = tool.name

    async def run(**kwargs: Any) -> Any:
        call = _CALL.get()
        if call is None or call.name != name:
            raise ConfigError(f"tool {name!r} of a Pydantic AI agent runs only inside its run")
        token = _KEY.set(kwargs.get("idempotency_key"))
        try:
            value = await call.toolset.call_tool(call.name, call.arguments, call.ctx, call.tool)
        except ModelRetry as exc:
            return {_MARK: "retry", "message": exc.message}
        except (ApprovalRequired, CallDeferred) as exc:
            return {
                _MARK: "unsupported",
                "message": f"tool {name!r} raised {type(exc).__name__}: deferring a call from "
                "inside a tool is not hosted by stalwart; mark the tool requires_approval=True "
                "(held in stalwart's approval queue) or use a TaintPolicy rule",
            }
        finally:
            _KEY.reset(token)
        return to_jsonable_python(value)

    signature, annotations = _signature(tool, policy.side_effect)
    run.__signature__ = signature  # type: ignore[attr-defined]
    run.__annotations__ = {**annotations, "return": Any}
    run.__name__ = name
    run.__doc__ = tool.description
    return Tool(
        fn=run,
        name=name,
        description=tool.description or "",
        scopes=frozenset(policy.scopes),
        timeout=policy.timeout,
        side_effect=policy.side_effect,
        deduplicates=policy.deduplicates,
        alternatives=tuple(policy.alternatives),
        reconcile=policy.reconcile,
        double=policy.double,
    )


def build_tools(
    toolsets: Sequence[AbstractToolset[Any]], policies: Mapping[str, ToolPolicy], agent: str
) -> tuple[list[Tool], list[str]]:
    """The stalwart tools of an agent's function tools, and the names of those Pydantic AI
    marks ``requires_approval``. Every tool needs a policy, and every policy a tool."""
    found = function_tools(toolsets)
    missing = sorted(set(found) - set(policies))
    if missing:
        raise ConfigError(
            f"agent {agent!r}: the Pydantic AI tools {missing} have no ToolPolicy; give each "
            "PydanticAIAgent(policies={name: ToolPolicy(scopes=[...], side_effect=...)}) "
            "so stalwart knows what it may touch"
        )
    unknown = sorted(set(policies) - set(found))
    if unknown:
        raise ConfigError(
            f"agent {agent!r}: policies name {unknown}, which are not tools of the Pydantic AI "
            f"agent (its tools: {sorted(found)})"
        )
    tools = [stalwart_tool(found[n], policies[n]) for n in sorted(found)]
    approval = sorted(n for n, t in found.items() if t.requires_approval)
    return tools, approval


@dataclasses.dataclass
class GuardedToolset(WrapperToolset[Any]):
    """The run's toolset, every call sent through stalwart's guarded, journaled path
    (``task``: the task's context; a dataclass, as Pydantic AI copies toolsets per run)."""

    task: TaskContext

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        tools = await super().get_tools(ctx)
        # A tool Pydantic AI would defer for approval is called: stalwart's guard holds it
        # in the approval queue (the adapter gave it an approval rule), durably if asked.
        return {
            name: dataclasses.replace(
                tool, tool_def=dataclasses.replace(tool.tool_def, kind="function")
            )
            if tool.tool_def.kind == "unapproved"
            else tool
            for name, tool in tools.items()
        }

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        token = _CALL.set(_Call(self.wrapped, name, tool_args, ctx, tool))
        try:
            result = await self.task.call_tool(
                name, to_jsonable_python(tool_args), proposed=True, call_id=ctx.tool_call_id or ""
            )
        finally:
            _CALL.reset(token)
        if not result.ok:  # denied, held, unavailable, failed: the model reads why
            body: dict[str, Any] = {"status": result.status, "error": result.error}
            if result.alternatives:
                body["alternatives"] = list(result.alternatives)
            return body
        value = result.value
        if isinstance(value, dict) and _MARK in value:
            if value[_MARK] == "retry":
                raise ModelRetry(str(value["message"]))
            raise ConfigError(str(value["message"]))
        return value
