"""The SDK's ``Model``/``ModelProvider`` routed through :meth:`TaskContext.call_model`.

Every model call an Agents SDK run makes becomes one journaled stalwart model step:
the app's fallback chain with its deadlines, retries, breakers, spend reservation,
rate limits, redaction and metrics. On replay the journal answers and no provider is
called. A model built with ``stream=True`` sends each answer's text to the task's event
stream (``GET /v1/tasks/{id}/events``) as it is generated, and the journal still
records the whole answer, which is what the SDK gets.

``Runner.run_streamed`` (:meth:`StalwartRunner.run_streamed`) is hosted too: the SDK's
``stream_response`` is the same journaled call, streamed from the model, its text handed
to the SDK as ``response.output_text.delta`` events while it is generated and the whole
answer as ``response.completed`` once it is journaled; an answer the journal gives back
(a replay) comes as one delta with the whole text.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import msgspec
from agents import Handoff, Model, ModelProvider, ModelResponse, ModelSettings, ModelTracing
from agents.agent_output import AgentOutputSchemaBase
from agents.items import TResponseInputItem, TResponseStreamEvent
from agents.models.fake_id import FAKE_RESPONSES_ID
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseTextDeltaEvent,
    ResponseUsage,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
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
    :meth:`TaskContext.call_model` on chain ``chain``.

    ``ahead``: a reply with tool calls takes the reservation of the run's next model call
    with its own settle (``call_model(reserve_next=True)``); the caller releases it when
    the run ends (``TaskContext.release_ahead``)."""

    def __init__(
        self, task: TaskContext, chain: str, *, stream: bool = False, ahead: bool = False
    ) -> None:
        self.task = task
        self.chain = chain
        self.stream = stream
        self.ahead = ahead

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
        reply = await self._call(
            system_instructions, input, model_settings=model_settings, tools=tools,
            output_schema=output_schema, handoffs=handoffs,
            previous_response_id=previous_response_id, conversation_id=conversation_id,
            prompt=prompt,
        )  # fmt: skip
        return reply_to_response(reply)

    async def _call(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        *,
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
        on_text: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """One journaled model call (``on_text``: the answer's text as it comes)."""
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
            on_text=on_text,
            reserve_next=self.ahead,
        )
        if replayed:
            _check_replayed(self.task, position, reply, sent, {s.name for s in specs})
        return reply

    @override
    async def stream_response(
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
        """The journaled call, streamed (see the module docstring)."""
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        call = asyncio.ensure_future(
            self._call(
                system_instructions,
                input,
                model_settings=model_settings,
                tools=tools,
                output_schema=output_schema,
                handoffs=handoffs,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
                on_text=pieces.put_nowait,
            )
        )
        call.add_done_callback(lambda _: pieces.put_nowait(None))
        number, streamed = 0, 0
        try:
            while (piece := await pieces.get()) is not None:
                yield _text_delta(piece, number)
                number, streamed = number + 1, streamed + len(piece)
            reply = await call
        finally:  # the reader left early: the call it started ends with it
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
        rest = reply["content"][streamed:]
        if rest:  # an answer the journal gave back (or a model that does not stream)
            yield _text_delta(rest, number)
            number += 1
        yield _completed(reply, number)


def _text_delta(text: str, number: int) -> ResponseTextDeltaEvent:
    return ResponseTextDeltaEvent(
        content_index=0,
        delta=text,
        item_id=FAKE_RESPONSES_ID,
        output_index=0,
        type="response.output_text.delta",
        sequence_number=number,
        logprobs=[],
    )


def _completed(reply: Mapping[str, Any], number: int) -> ResponseCompletedEvent:
    """The SDK's last event of a streamed call: the whole (journaled) answer's items."""
    usage = reply["usage"]
    prompt, completion = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
    response = Response(
        id=FAKE_RESPONSES_ID,
        created_at=0.0,  # not the provider's: a replayed call gives the same response
        model=str(reply["model"]),
        object="response",
        output=reply_to_response(reply).output,
        tool_choice="auto",
        tools=[],
        parallel_tool_calls=False,
        usage=ResponseUsage(
            input_tokens=prompt,
            output_tokens=completion,
            total_tokens=prompt + completion,
            input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
            output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
        ),
    )
    return ResponseCompletedEvent(
        response=response, type="response.completed", sequence_number=number
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
    ``ahead``: the models reserve a tool-calling reply's next call ahead
    (:class:`StalwartModel`).
    """

    def __init__(
        self, task: TaskContext, chain: str, *, stream: bool = False, ahead: bool = False
    ) -> None:
        self.task = task
        self.chain = chain
        self.stream = stream
        self.ahead = ahead

    @override
    def get_model(self, model_name: str | None) -> Model:
        chain = self.chain
        if model_name is not None and model_name in self.task.resources.models:
            chain = model_name
        return StalwartModel(self.task, chain, stream=self.stream, ahead=self.ahead)
