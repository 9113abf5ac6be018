"""Pydantic AI messages and tool definitions <-> stalwart's model-call data.

A Pydantic AI request becomes the OpenAI-format message list and :class:`ToolSpec` s
that :meth:`~stalwart.agent.TaskContext.call_model` journals and sends; the journaled
reply becomes a Pydantic AI :class:`~pydantic_ai.messages.ModelResponse`. What maps:

- system prompts and instructions -> ``system`` messages (instructions after the
  leading system prompts, as Pydantic AI's own OpenAI model puts them);
- user prompts -> ``user`` messages (text only: stalwart's model stack carries text);
- tool returns -> ``tool`` messages carrying the call id, with the text Pydantic AI
  itself would send (``model_response_str``), a retried call's (validation error,
  ``ModelRetry``) included;
- retry feedback that answers no tool call (an output validator's) -> a ``user`` message
  (the older ``RetryPromptPart``: a ``tool`` message when it names a tool, else ``user``);
- model text and tool calls -> an ``assistant`` message with ``tool_calls``;
- function tools and output tools -> :class:`ToolSpec` s (output tools are how
  structured output reaches the model, as in Pydantic AI's default tool output mode).

Thinking parts, files, and provider-built-in tool parts do not cross: a request carrying
a file or image is refused with a :class:`~stalwart.errors.ConfigError`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from pydantic_ai.messages import (
    InstructionPart,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    RetryFeedbackPart,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.usage import RequestUsage

from stalwart.errors import ConfigError
from stalwart.llm import ToolSpec

__all__ = ["instructions_of", "to_messages", "to_response", "to_tool_specs"]


def instructions_of(
    messages: Sequence[ModelMessage], parameters: ModelRequestParameters
) -> str | None:
    """The instructions in force for this request (the run's, else the history's)."""
    parts = parameters.instruction_parts
    if parts is not None:
        return InstructionPart.join(parts) if parts else None
    for message in reversed(messages):
        if isinstance(message, ModelRequest) and message.instructions:
            return message.instructions
    return None


def _user_text(part: UserPromptPart) -> str:
    if isinstance(part.content, str):
        return part.content
    texts: list[str] = []
    for item in part.content:
        if not isinstance(item, str):
            raise ConfigError(
                f"a user prompt carries {type(item).__name__}: the stalwart adapter for Pydantic "
                "AI sends text only (send the file's text, or a link to it, instead)"
            )
        texts.append(item)
    return "\n".join(texts)


def _request_messages(message: ModelRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, SystemPromptPart):
            out.append({"role": "system", "content": part.content})
        elif isinstance(part, UserPromptPart):
            out.append({"role": "user", "content": _user_text(part)})
        elif isinstance(part, ToolReturnPart):
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": part.tool_call_id,
                    "content": part.model_response_str(),
                }
            )
        elif isinstance(part, RetryFeedbackPart):  # a retry answering no tool call
            out.append({"role": "user", "content": part.model_response()})
        elif isinstance(part, RetryPromptPart):  # before Pydantic AI 2.x split it in two
            if part.tool_name is None:  # an output validator's retry: the model is told
                out.append({"role": "user", "content": part.model_response()})
            else:
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": part.tool_call_id,
                        "content": part.model_response(),
                    }
                )
        # other parts (tool availability notes, framework bookkeeping) carry no turn
    return out


def _response_message(message: ModelResponse) -> dict[str, Any] | None:
    text = "".join(p.content for p in message.parts if isinstance(p, TextPart))
    calls = [
        {
            "id": p.tool_call_id,
            "type": "function",
            "function": {"name": p.tool_name, "arguments": p.args_as_json_str()},
        }
        for p in message.parts
        if isinstance(p, ToolCallPart)
    ]
    if not text and not calls:
        return None  # thinking only: nothing the chat format carries
    turn: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        turn["tool_calls"] = calls
    return turn


def to_messages(
    messages: Sequence[ModelMessage], parameters: ModelRequestParameters
) -> list[dict[str, Any]]:
    """The OpenAI-format conversation for a Pydantic AI request (see the module docstring)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, ModelRequest):
            out.extend(_request_messages(message))
        else:
            turn = _response_message(message)
            if turn is not None:
                out.append(turn)
    instructions = instructions_of(messages, parameters)
    if instructions:
        leading = 0
        while leading < len(out) and out[leading]["role"] == "system":
            leading += 1
        out.insert(leading, {"role": "system", "content": instructions})
    return out


def to_tool_specs(parameters: ModelRequestParameters) -> list[ToolSpec]:
    """The function tools, then the output tools, as the model is offered them."""
    return [
        ToolSpec(t.name, t.description or "", dict(t.parameters_json_schema))
        for t in (*parameters.function_tools, *parameters.output_tools)
    ]


def to_response(reply: Mapping[str, Any], *, timestamp: datetime.datetime) -> ModelResponse:
    """The Pydantic AI response for a journaled model reply.

    ``timestamp`` is supplied (the run's journaled clock), so a replayed response is
    equal to the first one, field for field.
    """
    parts: list[ModelResponsePart] = []
    if reply["content"]:
        parts.append(TextPart(content=str(reply["content"])))
    for call in reply["tool_calls"]:
        arguments = call["arguments"]
        parts.append(
            ToolCallPart(
                tool_name=str(call["name"]),
                args=arguments
                if isinstance(arguments, dict)
                else msgspec.json.encode(arguments).decode(),
                tool_call_id=str(call["id"]),
            )
        )
    usage = reply.get("usage") or {}
    return ModelResponse(
        parts=parts,
        usage=RequestUsage(
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
        ),
        model_name=str(reply.get("model", "")),
        timestamp=timestamp,
        provider_name="stalwart",
    )
