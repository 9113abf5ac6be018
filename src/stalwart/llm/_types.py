"""The data a model call takes and gives, independent of any provider's wire format."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

__all__ = [
    "Message",
    "ModelClient",
    "ModelRequest",
    "ModelResponse",
    "Role",
    "ToolCall",
    "ToolSpec",
    "Usage",
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


class ModelRequest(msgspec.Struct, frozen=True):
    """What to ask. ``max_tokens`` bounds the answer (and the worst-case cost)."""

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 1024
    temperature: float = 0.0


class Usage(msgspec.Struct, frozen=True):
    """Tokens the provider reports for one call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

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


@runtime_checkable
class ModelClient(Protocol):
    """Anything that answers a :class:`ModelRequest`: one provider's model, or a chain."""

    name: str

    async def complete(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> ModelResponse: ...

    async def aclose(self) -> None: ...
