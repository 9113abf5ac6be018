"""The SDK's ``Model``/``ModelProvider`` routed through :meth:`TaskContext.call_model`.

Every model call an Agents SDK run makes becomes one journaled stalwart model step:
the app's fallback chain with its deadlines, retries, breakers, spend reservation,
rate limits, redaction and metrics. On replay the journal answers and no provider is
called. ``Runner.run_streamed`` is not hosted (a streamed run would have to journal a
stream); a model built with ``stream=True`` sends each answer's text to the task's event
stream (``GET /v1/tasks/{id}/events``) as it is generated, and the journal still
records the whole answer, which is what the SDK gets.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import msgspec
from agents import Handoff, Model, ModelProvider, ModelResponse, ModelSettings, ModelTracing
from agents.agent_output import AgentOutputSchemaBase
from agents.items import TResponseInputItem, TResponseStreamEvent
from openai.types.responses.response_prompt_param import ResponsePromptParam
from typing_extensions import override

from stalwart.adapters.openai_agents._convert import (
    items_to_messages,
    reply_to_response,
    response_format,
    tool_specs,
)
from stalwart.agent import TaskContext
from stalwart.errors import ConfigError, NonDeterminismError
from stalwart.llm import ResponseFormat, ToolSpec

__all__ = ["StalwartModel", "StalwartModelProvider"]

DEFAULT_MAX_TOKENS = 1024
"""The answer bound when the agent's ``ModelSettings.max_tokens`` is not set (it also
sizes the worst-case spend reservation)."""


class StalwartModel(Model):
    """One model chain of the app, for one task: each ``get_response`` is a journaled
    :meth:`TaskContext.call_model` on chain ``chain``."""

    def __init__(self, task: TaskContext, chain: str, *, stream: bool = False) -> None:
        self.task = task
        self.chain = chain
        self.stream = stream

    @override
    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: ResponsePromptParam | None = None,
    ) -> ModelResponse:
        if previous_response_id or conversation_id or prompt:
            raise ConfigError(
                "previous_response_id, conversation_id and prompt keep the conversation on "
                "OpenAI's servers; a run hosted by stalwart keeps it in its journal: leave "
                "them unset"
            )
        specs = tool_specs(tools, handoffs)
        messages = items_to_messages(system_instructions, input)
        fmt = response_format(output_schema)
        sent = request_digest(messages, specs, fmt)
        journal = self.task.durable
        replayed, position = journal.replaying, journal.position
        reply = await self.task.call_model(
            messages,
            tools=specs,
            model=self.chain,
            max_tokens=model_settings.max_tokens or DEFAULT_MAX_TOKENS,
            response_format=fmt,
            digest=sent,
            stream=self.stream,
        )
        if replayed:
            _check_replayed(self.task, position, reply, sent, {s.name for s in specs})
        return reply_to_response(reply)

    @override
    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: ResponsePromptParam | None = None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        raise ConfigError(
            "Runner.run_streamed is not hosted by stalwart (a journal records whole "
            "answers); use Runner.run / StalwartRunner.run"
        )


def request_digest(
    messages: Sequence[Mapping[str, Any]], specs: Sequence[ToolSpec], fmt: ResponseFormat | None
) -> str:
    """A fingerprint of a model request (journaled with its reply, compared on replay)."""
    canon = msgspec.json.encode([list(messages), list(specs), fmt], order="sorted")
    return hashlib.sha256(canon).hexdigest()[:16]


def _check_replayed(
    task: TaskContext, position: int, reply: Mapping[str, Any], sent: str, offered: set[str]
) -> None:
    """A journaled answer must fit the run replaying it: it was recorded for the request
    just sent, and every tool it calls is one the agent still offers."""
    recorded = reply.get("request_digest")
    if recorded is not None and recorded != sent:
        raise NonDeterminismError(
            f"task {task.task_id!r}, journal position {position}: the SDK's model call sends "
            f"a different request than the journal recorded (digest {sent}, recorded "
            f"{recorded}): the agent's instructions, its tools or the conversation before "
            "this call changed. The agent's code changed in a way that breaks replay; "
            "finish old tasks on the old code"
        )
    for call in reply["tool_calls"]:
        if call["name"] not in offered:
            raise NonDeterminismError(
                f"task {task.task_id!r}, journal position {position}: the journal's model "
                f"answer calls tool {call['name']!r}, which the SDK agent no longer offers "
                f"(it offers {sorted(offered)}). The agent's code changed in a way that "
                "breaks replay; finish old tasks on the old code"
            )


class StalwartModelProvider(ModelProvider):
    """Resolves the SDK agents' model names to the app's model chains for one task.

    An agent whose ``model`` names one of the app's chains that this stalwart agent
    may use gets that chain; any other name (``"gpt-4.1"``, or none) gets ``chain``,
    the chain the stalwart agent was declared with. No name reaches OpenAI directly.
    """

    def __init__(self, task: TaskContext, chain: str, *, stream: bool = False) -> None:
        self.task = task
        self.chain = chain
        self.stream = stream

    @override
    def get_model(self, model_name: str | None) -> Model:
        if model_name is not None and model_name in self.task.resources.models:
            return StalwartModel(self.task, model_name, stream=self.stream)
        return StalwartModel(self.task, self.chain, stream=self.stream)
