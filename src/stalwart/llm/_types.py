"""The data a model call takes and gives, independent of any provider's wire format."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

__all__ = [
    "Message",
    "ModelClient",
    "ModelRequest",
    "ModelResponse",
    "ResponseFormat",
    "Role",
    "StreamDelta",
    "StreamingModelClient",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "close_stream",
]

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(msgspec.Struct, frozen=True):
    """A tool call the model asks for. ``arguments`` is parsed JSON (a dict)."""

    id: str
    name: str
    arguments: dict[str, Any]


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """One turn of a conversation.

    ``tool_calls`` only on assistant turns; ``tool_call_id`` only on tool turns
    (the result of the call with that id).
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


class ToolSpec(msgspec.Struct, frozen=True):
    """A tool the model may call: its name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


class ResponseFormat(msgspec.Struct, frozen=True):
    """Structured output: the answer must be a JSON object matching ``schema``.

    ``name`` names the schema on the wire (OpenAI requires one); ``strict`` asks
    OpenAI's strict mode (the schema must then meet its rules: every property
    required, ``additionalProperties: false``). The answer is validated by
    :func:`stalwart.llm.structured` either way.
    """

    name: str
    schema: dict[str, Any]
    strict: bool = False


class ModelRequest(msgspec.Struct, frozen=True):
    """What to ask. ``max_tokens`` bounds the answer (and the worst-case cost).

    Each adapter encodes the fields its model takes (see
    :mod:`stalwart.llm._capabilities`): ``max_tokens`` becomes
    ``max_completion_tokens`` for a reasoning model, and ``temperature`` is left
    out where the model refuses it. ``reasoning_effort`` (``minimal``, ``low``,
    ``medium``, ``high``) is sent only to models that reason. ``response_format``
    asks for structured output; ``parallel_tool_calls=False`` asks for at most one
    tool call per answer; ``cache`` marks the stable prefix (system prompt and
    tools) for prompt caching where the provider needs it marked (Anthropic).
    """

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 1024
    temperature: float = 0.0
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    parallel_tool_calls: bool | None = None
    cache: bool = True


class Usage(msgspec.Struct, frozen=True):
    """Tokens the provider reports for one call.

    ``prompt_tokens`` counts every input token, cached or not; ``cached_tokens``
    is the part read from the provider's prompt cache (cheaper), and
    ``cache_write_tokens`` the part written to it (Anthropic prices these
    higher). ``reasoning_tokens`` is the part of ``completion_tokens`` a
    reasoning model spent thinking.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelResponse(msgspec.Struct, frozen=True):
    """The answer, with what it cost and which model gave it.

    ``model`` is the ``provider:name`` that served this call; ``fallback_from``
    lists the models tried before it, in order (empty when the primary served).
    """

    model: str
    message: Message
    finish_reason: str
    usage: Usage
    cost_usd: float
    latency_s: float
    fallback_from: tuple[str, ...] = ()


class StreamDelta(msgspec.Struct, frozen=True, omit_defaults=True):
    """One piece of a streamed answer.

    ``text`` is new answer text; ``tool_call`` a tool call, whole, once its
    arguments are complete. The last delta of a stream carries ``response``:
    the assembled answer, the same :class:`ModelResponse` ``complete`` returns
    (and the journal records).
    """

    text: str = ""
    tool_call: ToolCall | None = None
    response: ModelResponse | None = None


@runtime_checkable
class ModelClient(Protocol):
    """Anything that answers a :class:`ModelRequest`: one provider's model, or a chain.

    Implement it to bring your own client (an SDK, a gateway, a local model):
    ``name`` is its ``provider:model``; ``complete`` answers one request within
    ``timeout`` seconds (``None``: the caller's deadline applies) or raises;
    ``aclose`` releases its connections. Wrapped in
    :class:`~stalwart.llm.GuardedModel`, it gets stalwart's deadline, retry,
    breaker, metrics and cost; in a chain, fallback; in an agent, budget and
    journal. See ``docs/models.md``.
    """

    name: str

    async def complete(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> ModelResponse: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class StreamingModelClient(ModelClient, Protocol):
    """A :class:`ModelClient` that can also stream its answer as :class:`StreamDelta` s,
    the last one carrying the whole response."""

    def stream(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamDelta]: ...


async def close_stream(stream: AsyncIterator[Any]) -> None:
    """Close a stream its reader leaves early (an async generator's ``aclose``): its
    connection is released and its call observed now, not when it is garbage-collected."""
    if isinstance(stream, AsyncGenerator):
        await stream.aclose()
