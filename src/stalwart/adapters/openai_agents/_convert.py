"""OpenAI Agents SDK items <-> stalwart messages, tool specs and model replies.

The SDK speaks the Responses item format; stalwart's model stack speaks chat
messages (:class:`~stalwart.llm.Message`). The SDK's own Chat Completions converter
(``agents.models.chatcmpl_converter.Converter``, the one its
``OpenAIChatCompletionsModel`` uses) does the item <-> message translation, so a run
through stalwart sends the model what the SDK would have sent; this module only
narrows the result to what :meth:`TaskContext.call_model` takes and turns a
journaled reply back into the SDK's output items.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agents import FunctionTool, Handoff, ModelResponse, Usage
from agents.agent_output import AgentOutputSchemaBase
from agents.items import TResponseInputItem
from agents.models.chatcmpl_converter import Converter
from openai.types.chat import (
    ChatCompletionMessage,
    ChatCompletionMessageCustomToolCall,
    ChatCompletionMessageFunctionToolCall,
)
from openai.types.chat.chat_completion_message_function_tool_call import Function

from stalwart.errors import ConfigError
from stalwart.llm import ResponseFormat, ToolSpec

__all__ = [
    "items_to_messages",
    "reply_to_response",
    "response_format",
    "tool_specs",
]


def _text(content: Any) -> str:
    """The text of a chat message's content (a string, or a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content:
        if isinstance(part, Mapping):
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text"):
                parts.append(str(part.get("text", "")))
            elif kind == "refusal":
                parts.append(str(part.get("refusal", "")))
            else:
                raise ConfigError(
                    f"a message part of type {kind!r} cannot go through stalwart's model "
                    "stack (text only); send text, or describe the file or image in words"
                )
        else:
            parts.append(str(part))
    return "".join(parts)


def items_to_messages(
    system: str | None, items: str | Iterable[TResponseInputItem]
) -> list[dict[str, Any]]:
    """The chat messages (``role``, ``content``, ``tool_calls``, ``tool_call_id``) for the
    SDK's input items, system instructions first; every content is text."""
    converted = Converter.items_to_messages(items if isinstance(items, str) else list(items))
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    for raw in converted:
        m: Mapping[str, Any] = raw  # a TypedDict: read as the mapping it is
        role = str(m["role"])
        if role == "developer":  # the chat wire's newer name for system
            role = "system"
        message: dict[str, Any] = {"role": role, "content": _text(m.get("content"))}
        calls = m.get("tool_calls")
        if calls:
            message["tool_calls"] = [
                {
                    "id": str(c["id"]),
                    "type": "function",
                    "function": {
                        "name": str(c["function"]["name"]),
                        "arguments": str(c["function"].get("arguments") or "{}"),
                    },
                }
                for c in calls
            ]
        if m.get("tool_call_id") is not None:
            message["tool_call_id"] = str(m["tool_call_id"])
        messages.append(message)
    return messages


def tool_specs(tools: Sequence[Any], handoffs: Sequence[Handoff[Any, Any]]) -> list[ToolSpec]:
    """The function tools and handoffs (offered as tools, as the SDK does) as stalwart specs.

    Hosted tools (web search, file search, computer use, code interpreter...) run on
    OpenAI's servers: they cannot be hosted here, and say so."""
    specs: list[ToolSpec] = []
    for tool in tools:
        if not isinstance(tool, FunctionTool):
            raise ConfigError(
                f"the tool {getattr(tool, 'name', tool)!r} ({type(tool).__name__}) is a hosted "
                "tool that runs on OpenAI's servers; stalwart hosts function tools only "
                "(write it as a @function_tool, or serve it over MCP)"
            )
        specs.append(ToolSpec(tool.name, tool.description or "", dict(tool.params_json_schema)))
    for handoff in handoffs:
        specs.append(
            ToolSpec(handoff.tool_name, handoff.tool_description, dict(handoff.input_json_schema))
        )
    return specs


def response_format(schema: AgentOutputSchemaBase | None) -> ResponseFormat | None:
    """The structured-output request for the agent's ``output_type`` (None: plain text)."""
    if schema is None or schema.is_plain_text():
        return None
    return ResponseFormat(
        name="final_output", schema=schema.json_schema(), strict=schema.is_strict_json_schema()
    )


def reply_to_response(reply: Mapping[str, Any]) -> ModelResponse:
    """The SDK's response for a (journaled) :meth:`TaskContext.call_model` reply.

    Built by the SDK's converter from a chat message, so items carry the SDK's own
    placeholder ids: the same reply gives the same items on every replay."""
    calls: list[ChatCompletionMessageFunctionToolCall | ChatCompletionMessageCustomToolCall] = [
        ChatCompletionMessageFunctionToolCall(
            id=str(c["id"]),
            type="function",
            function=Function(name=str(c["name"]), arguments=json.dumps(c["arguments"])),
        )
        for c in reply["tool_calls"]
    ]
    message = ChatCompletionMessage(
        role="assistant", content=reply["content"] or None, tool_calls=calls or None
    )
    usage = reply["usage"]
    prompt, completion = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
    return ModelResponse(
        output=Converter.message_to_output_items(message, provider_data={"model": reply["model"]}),
        usage=Usage(
            requests=1,
            input_tokens=prompt,
            output_tokens=completion,
            total_tokens=prompt + completion,
        ),
        response_id=None,
    )
