"""Running an SDK agent as a stalwart task: ``StalwartRunner`` and ``OpenAIAgentsAgent``.

``StalwartRunner.run`` is ``Runner.run`` for code already inside a stalwart task
(the way ``DBOSRunner.run`` is for code inside a DBOS workflow): the SDK's own loop
runs unchanged in the agent's process, with its run config narrowed so that the
model calls go through the app's model chains (:class:`StalwartModelProvider`),
function tools run one at a time in the order the model listed them (the journal
needs one order), and the SDK's hosted tracing export is off. SDK tool approvals
(``needs_approval``) become stalwart approvals: the task parks (``awaiting_approval``),
holding no process, until a person decides through stalwart's approval queue; the
decision is journaled and the run resumes from its journal, on any node.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import agents
from agents import Agent, RunConfig, RunResult, RunResultStreaming, RunState, ToolApprovalItem
from agents.run_config import ToolExecutionConfig
from openai.types.responses import ResponseFunctionToolCall
from pydantic import BaseModel

from stalwart.adapters.openai_agents._model import StalwartModelProvider
from stalwart.adapters.openai_agents._tools import (
    RunBinding,
    ToolPolicy,
    bind_tools,
    function_tools,
    run_binding,
    unbound_tools,
)
from stalwart.agent import PythonAgent, TaskContext
from stalwart.agent._guarded import _held_durably
from stalwart.errors import ConfigError
from stalwart.guard import Security, ToolRule

__all__ = ["OpenAIAgentsAgent", "StalwartRunner", "disable_hosted_tracing"]

DEFAULT_MAX_TURNS = 10


def disable_hosted_tracing() -> None:
    """Turn off the SDK's trace export to OpenAI's servers for this process.

    The SDK's default trace processor uploads every run's spans to
    ``api.openai.com``; a stalwart agent sends nothing there. stalwart's own
    tracing (OpenTelemetry, docs/observability.md) covers the run: a task span,
    a span per model call and per tool call. Called when this module is imported,
    and again before every run."""
    os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    agents.set_tracing_disabled(True)
    agents.set_trace_processors([])


disable_hosted_tracing()


def _run_config(base: RunConfig | None, provider: StalwartModelProvider) -> RunConfig:
    config = base if base is not None else RunConfig()
    if config.model is not None and not isinstance(config.model, str):
        raise ConfigError(
            "RunConfig.model is a Model object; a run hosted by stalwart sends every model "
            "call through the app's model chains: name a chain, or leave it unset"
        )
    return dataclasses.replace(
        config,
        model_provider=provider,
        tracing_disabled=True,
        tool_execution=ToolExecutionConfig(max_function_tool_concurrency=1),
    )


def _call_id(item: ToolApprovalItem) -> str:
    raw = item.raw_item
    if isinstance(raw, Mapping):
        return str(raw.get("call_id") or raw.get("id") or "")
    return str(raw.call_id if isinstance(raw, ResponseFunctionToolCall) else "")


async def _decide(binding: RunBinding, item: ToolApprovalItem) -> bool:
    """A person's decision on an SDK approval request, through stalwart's queue (the task
    parks until it is made; journaled once made). True: approved."""
    task = binding.task
    name = item.name or "tool"
    try:
        arguments = json.loads(item.arguments or "{}")
    except json.JSONDecodeError:
        arguments = {"arguments": item.arguments}
    if not isinstance(arguments, dict):
        arguments = {"arguments": arguments}
    if task.resources.approvals is None:
        raise ConfigError(
            f"the SDK tool {name!r} needs approval but this agent has no approval queue "
            "(the store must keep one: SQLite or PostgreSQL)"
        )
    held = await _held_durably(
        task, name, arguments, "the agent's tool asks for a person's approval (needs_approval)"
    )
    if held is None:
        binding.approved.add(_call_id(item))
        return True
    return False


class StalwartRunner:
    """``agents.Runner``, for code inside a stalwart task (see the module docstring)."""

    @classmethod
    async def run(
        cls,
        starting_agent: Agent[Any],
        input: str | list[Any],
        *,
        task: TaskContext,
        model: str | None = None,
        run_config: RunConfig | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> RunResult:
        """Run ``starting_agent`` as ``Runner.run`` does, hosted by ``task``.

        ``model`` is the app's model chain for agents whose model names no chain
        (default: the stalwart agent's). ``stream``: each model answer's text goes to
        the task's event stream (``GET /v1/tasks/{id}/events``) as it is generated; the
        run itself gets whole answers, as without. Other keyword arguments are
        ``Runner.run``'s.
        The agent's function tools must be bound (:class:`OpenAIAgentsAgent` does it)."""
        config, binding = _prepare(
            starting_agent, task, model=model, run_config=run_config, stream=stream,
            ahead=True, kwargs=kwargs,
        )  # fmt: skip
        token = run_binding().set(binding)
        try:
            result = await agents.Runner.run(starting_agent, input, run_config=config, **kwargs)
            while result.interruptions:
                state = result.to_state()
                for item in result.interruptions:
                    if await _decide(binding, item):
                        state.approve(item)
                    else:
                        state.reject(
                            item,
                            rejection_message=f"a person did not approve {item.name}; it did "
                            "not run. Do not retry it; tell the customer a colleague will "
                            "follow up.",
                        )
                result = await agents.Runner.run(starting_agent, state, run_config=config, **kwargs)
            return result
        finally:
            try:  # a reservation taken ahead for a model call the run did not make
                await task.release_ahead()
            finally:
                run_binding().reset(token)

    @classmethod
    def run_streamed(
        cls,
        starting_agent: Agent[Any],
        input: str | list[Any] | RunState[Any],
        *,
        task: TaskContext,
        model: str | None = None,
        run_config: RunConfig | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> RunResultStreaming:
        """``Runner.run_streamed``, hosted by ``task``: the SDK's own streamed run, whose
        ``stream_events()`` give each model answer's text as it is generated
        (``response.output_text.delta`` raw events), from the same journaled calls as
        :meth:`run` makes; an answer the journal gives back (a resumed task) comes as one
        delta with its whole text. ``stream``: the text goes to the task's event stream
        (``GET /v1/tasks/{id}/events``) too.

        A run that stops for approval (``needs_approval``) ends with
        ``result.interruptions``, as the SDK's does; hand ``result.to_state()`` to
        :meth:`run`, which parks the task in stalwart's approval queue until a person
        decides, or decide it with the SDK's ``RunState`` yourself."""
        # no reservation taken ahead: the run goes on in the SDK's own task after this
        # returns, and nothing here sees it end to release one
        config, binding = _prepare(
            starting_agent, task, model=model, run_config=run_config, stream=stream,
            ahead=False, kwargs=kwargs,
        )  # fmt: skip
        # the SDK starts the run as a task of its own, which takes a copy of this context
        # (the binding with it) as it is created
        token = run_binding().set(binding)
        try:
            return agents.Runner.run_streamed(starting_agent, input, run_config=config, **kwargs)
        finally:
            run_binding().reset(token)


def _prepare(
    starting_agent: Agent[Any],
    task: TaskContext,
    *,
    model: str | None,
    run_config: RunConfig | None,
    stream: bool,
    ahead: bool,
    kwargs: Mapping[str, Any],
) -> tuple[RunConfig, RunBinding]:
    """The run config and tool binding of a hosted run (checks what it cannot host)."""
    chain = model or task.default_model
    if chain is None:
        raise ConfigError("StalwartRunner.run needs model= (an app model chain)")
    unbound = unbound_tools(starting_agent, task.resources.tools.names())
    if unbound:
        raise ConfigError(
            f"the SDK agent's tools {unbound} are not this stalwart agent's tools: declare "
            "the agent with OpenAIAgentsAgent(agent=...), which binds them"
        )
    if kwargs.get("session") is not None or kwargs.get("conversation_id"):
        raise ConfigError(
            "an SDK session or server-side conversation stores the conversation outside "
            "the journal; a hosted run keeps it in the task's journal: leave them unset"
        )
    disable_hosted_tracing()
    config = _run_config(run_config, StalwartModelProvider(task, chain, stream=stream, ahead=ahead))
    return config, RunBinding(task)


def _output(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _text_input(task_input: Any) -> str | list[Any]:
    """The SDK input for a task input: a string, a list of input items, or the text field
    of a dict (``text``, ``message``, ``input``, ``question``); else its JSON."""
    if isinstance(task_input, str | list):
        return task_input
    if isinstance(task_input, dict):
        for key in ("text", "message", "input", "question"):
            if isinstance(task_input.get(key), str | list):
                value: str | list[Any] = task_input[key]
                return value
    return json.dumps(task_input)


@dataclasses.dataclass(frozen=True)
class OpenAIAgentsAgent(PythonAgent):
    """An OpenAI Agents SDK agent, declared to stalwart as one of the app's agents.

    ``agent`` is the SDK ``Agent`` (unchanged); ``model`` the app's model chain its
    model calls use; ``tool_policies`` says, per function tool name, its scopes and
    whether it has side effects (:class:`ToolPolicy`; a tool not named is a read-only
    tool needing no scope). ``scopes`` defaults to every scope the policies name.
    ``stream``: each model answer's text goes to ``GET /v1/tasks/{id}/events`` as it
    is generated (server-sent events), as ``LLMAgent(stream=True)`` does. Each task
    runs ``StalwartRunner.run(agent, input)`` and returns ``{status, answer, agent,
    usage}`` (``answer``: the run's final output as JSON data).
    """

    agent: Agent[Any] | None = None
    tool_policies: Mapping[str, ToolPolicy] = dataclasses.field(default_factory=dict)
    max_turns: int = DEFAULT_MAX_TURNS
    stream: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.agent, Agent):
            raise ConfigError(f"OpenAIAgentsAgent {self.name!r} needs agent=<an agents.Agent>")
        if self.model is None:
            raise ConfigError(f"OpenAIAgentsAgent {self.name!r} needs model=<an app model chain>")
        tools = bind_tools(self.agent, self.tool_policies)
        names = {t.name for t in tools}  # a copy (dataclasses.replace) binds them again
        object.__setattr__(self, "tools", (*tools, *(t for t in self.tools if t.name not in names)))
        if not self.scopes:
            needed = sorted({s for p in self.tool_policies.values() for s in p.scopes})
            object.__setattr__(self, "scopes", tuple(needed))
        object.__setattr__(self, "security", _with_approvals(self.security, self.agent))
        sdk_agent = self.agent
        max_turns, stream = self.max_turns, self.stream

        async def run(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
            result = await StalwartRunner.run(
                sdk_agent, _text_input(task_input), task=ctx, max_turns=max_turns, stream=stream
            )
            return {
                "status": "completed",
                "answer": _output(result.final_output),
                "agent": result.last_agent.name,
                "usage": ctx.usage.as_dict(),
            }

        object.__setattr__(self, "fn", run)
        super().__post_init__()


def _with_approvals(security: Security, agent: Agent[Any]) -> Security:
    """``security`` with a rule for each tool that asks for approval (``needs_approval``),
    so the agent's process keeps an approval queue for them."""
    asking: Sequence[str] = [
        name for name, tool in function_tools(agent).items() if tool.needs_approval is not False
    ]
    missing = {name: ToolRule() for name in asking if name not in security.taint.tools}
    if not missing:
        return security
    taint = dataclasses.replace(security.taint, tools={**security.taint.tools, **missing})
    return dataclasses.replace(security, taint=taint)
