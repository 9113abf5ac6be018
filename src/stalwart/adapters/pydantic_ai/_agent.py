"""``PydanticAIAgent``: a Pydantic AI ``Agent`` declared as a stalwart agent.

The agent's own loop (``agent.run``) runs unchanged inside a stalwart task, in the
agent's OS process, leased, journaled and resumable. The adapter changes two
boundaries for the run, through Pydantic AI's public extension points (a model passed
to ``run`` and a capability, as its Temporal and DBOS durability capabilities do):

- the model is :class:`~stalwart.adapters.pydantic_ai.StalwartModel`: every request is a
  journaled ``TaskContext.call_model`` on the app's model chain;
- the toolset is wrapped by :class:`~stalwart.adapters.pydantic_ai.GuardedToolset`: every
  tool call is a guarded ``TaskContext.call_tool`` (journaled step or ledgered effect);
- the run's id is the task's and its clock the task's journaled start time, and tool
  calls run one after another, so a resumed run takes the same path and takes the
  journal's positions in the same order.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.toolsets import AbstractToolset
from pydantic_core import to_jsonable_python

from stalwart.adapters.pydantic_ai._model import StalwartModel
from stalwart.adapters.pydantic_ai._tools import GuardedToolset, ToolPolicy, build_tools
from stalwart.agent import PythonAgent, TaskContext
from stalwart.errors import ConfigError, StalwartError
from stalwart.guard import Provenance, ToolRule

__all__ = ["PydanticAIAgent", "StalwartDurability"]

_PROMPT_KEYS = ("prompt", "text", "message", "question", "input")


class StalwartDurability(AbstractCapability[Any]):
    """The capability a hosted run gets: stalwart's toolset wrapper, a replay-stable run
    id and clock. Built per task by :class:`PydanticAIAgent`."""

    def __init__(self, ctx: TaskContext, started: datetime.datetime) -> None:
        self._ctx = ctx
        self._started = started

    def get_wrapper_toolset(self, toolset: AbstractToolset[Any]) -> AbstractToolset[Any] | None:
        return GuardedToolset(toolset, self._ctx)

    def get_default_run_id(self) -> str | None:
        return self._ctx.task_id

    def get_run_clock(self) -> Callable[[], datetime.datetime] | None:
        started = self._started
        return lambda: started


def _prompt_of(task_input: Any) -> str:
    if isinstance(task_input, str):
        return task_input
    if isinstance(task_input, dict):
        for key in _PROMPT_KEYS:
            if isinstance(task_input.get(key), str):
                return str(task_input[key])
    raise ConfigError(
        "a PydanticAIAgent task input is a string, or a dict with one of "
        f"{list(_PROMPT_KEYS)}; give PydanticAIAgent(prompt=...) to build the prompt otherwise"
    )


def _approval_rule(rule: ToolRule | None) -> ToolRule:
    """``rule`` (or none) made to hold every call for a person: Pydantic AI's
    ``requires_approval`` mapped onto stalwart's approval queue."""
    base = rule or ToolRule()
    inner = base.check

    def check(arguments: Mapping[str, Any], seen: Provenance) -> str | None:
        extra = inner(arguments, seen) if inner is not None else None
        reasons = ["the agent's code marks this tool requires_approval", extra]
        return "; ".join(r for r in reasons if r)

    return dataclasses.replace(base, sensitive=True, check=check, action="approve")


@dataclasses.dataclass(frozen=True)
class PydanticAIAgent(PythonAgent):
    """A Pydantic AI ``Agent`` run as a stalwart agent (see docs/adapters/pydantic-ai.md).

    ``agent`` is the user's ``pydantic_ai.Agent``, unchanged. ``model`` names the app's
    model chain every request goes through (the agent's own model is not called).
    ``policies`` gives each of its function tools a :class:`ToolPolicy` (scopes, side
    effects), and ``scopes`` what this agent is granted. A task's input is the prompt
    (a string, or a dict with ``prompt``/``text``/``message``/...), or ``prompt(input)``
    builds it; ``deps(input)`` builds the run's dependencies (default: None).

    The task's result is ``{status, output, usage}``: ``output`` is the run's output as
    JSON (a Pydantic model becomes a dict).
    """

    agent: Any = None
    policies: Mapping[str, ToolPolicy] = dataclasses.field(default_factory=dict)
    prompt: Callable[[Any], str] | None = None
    deps: Callable[[Any], Any] | None = None
    max_tokens: int = 1024
    """Answer tokens per model call when the run's model settings do not say."""
    stream: bool = False
    """Stream every model answer as it is generated to ``GET /v1/tasks/{id}/events``
    (server-sent events), as ``LLMAgent(stream=True)`` does; the journal still records
    whole answers. A Pydantic AI agent with an ``event_stream_handler`` streams its
    calls whatever this says."""

    def __post_init__(self) -> None:
        if not isinstance(self.agent, Agent):
            raise ConfigError(
                f"PydanticAIAgent {self.name!r}: agent= must be a pydantic_ai.Agent, got "
                f"{type(self.agent).__name__}"
            )
        if self.model is None:
            raise ConfigError(
                f"PydanticAIAgent {self.name!r}: name the app's model chain its requests go "
                "through, model='main' (the Pydantic AI agent's own model is never called)"
            )
        if self.tools:
            raise ConfigError(
                f"PydanticAIAgent {self.name!r}: its tools are the Pydantic AI agent's; give "
                "each a ToolPolicy in policies= instead of tools="
            )
        tools, approval = build_tools(self.agent.toolsets, self.policies, self.name)
        object.__setattr__(self, "tools", tuple(tools))
        if approval:
            taint = self.security.taint
            rules = dict(taint.tools)
            for name in approval:
                rules[name] = _approval_rule(rules.get(name))
            security = dataclasses.replace(
                self.security, taint=dataclasses.replace(taint, tools=rules)
            )
            object.__setattr__(self, "security", security)
        spec = self

        async def run(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
            return await _run_hosted(spec, ctx, task_input)

        object.__setattr__(self, "fn", run)
        super().__post_init__()


def _unwrap(exc: BaseExceptionGroup[Any]) -> BaseException:
    """A stalwart error (a suspension for approval, a failed step) inside a group raised
    by the framework's task group: the one to raise, so the runner sees it as such."""
    for inner in exc.exceptions:
        if isinstance(inner, BaseExceptionGroup):
            found = _unwrap(inner)
            if found is not inner:
                return found
        elif isinstance(inner, StalwartError):
            return inner
    return exc


async def _run_hosted(spec: PydanticAIAgent, ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    assert spec.model is not None
    prompt = spec.prompt(task_input) if spec.prompt is not None else _prompt_of(task_input)
    deps = spec.deps(task_input) if spec.deps is not None else None
    started = datetime.datetime.fromtimestamp(await ctx.now(), datetime.UTC)
    model = StalwartModel(
        ctx, spec.model, started=started, max_tokens=spec.max_tokens, stream=spec.stream
    )
    agent: Agent[Any, Any] = spec.agent
    try:
        # one tool call at a time: each takes the next journal position in a fixed order
        with agent.parallel_tool_call_execution_mode("sequential"):
            result = await agent.run(
                prompt,
                model=model,
                deps=deps,
                capabilities=[StalwartDurability(ctx, started)],
            )
    except BaseExceptionGroup as group:
        raise _unwrap(group) from None
    finally:  # a reservation taken ahead for a request the run did not make (every exit)
        await ctx.release_ahead()
    return {
        "status": "completed",
        "output": to_jsonable_python(result.output),
        "usage": ctx.usage.as_dict(),
    }
