"""The OpenAI Responses API wire format (``POST /responses``).

The conversation is sent as ``input`` items: system turns become
``instructions``, user and assistant text become messages, tool calls become
``function_call`` items and their results ``function_call_output`` items (tied
by ``call_id``). The answer's ``output`` holds ``message`` items
(``output_text`` parts), ``function_call`` items, and ``reasoning`` items
(skipped: stalwart keeps no provider state between calls, ``store`` is off).
"""

from __future__ import annotations

from typing import Any

import msgspec

from stalwart.errors import BadModelResponse, ContentFiltered
from stalwart.llm._client import StreamAssembler
from stalwart.llm._openai import OpenAIChatWire, OpenAIClient, parse_arguments
from stalwart.llm._sse import SSEvent
from stalwart.llm._types import Message, ModelRequest, StreamDelta, ToolCall, Usage

__all__ = ["OpenAIResponsesClient", "OpenAIResponsesWire"]


class OpenAIResponsesWire(OpenAIChatWire):
    """The Responses API wire format of one model (encode, decode, stream events)."""

    def _encode(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        caps = self.capabilities
        instructions = "\n\n".join(m.content for m in request.messages if m.role == "system")
        items: list[dict[str, Any]] = []
        for msg in request.messages:
            if msg.role == "system":
                continue
            if msg.role == "tool":
                items.append(
                    {
                        "type": "function_call_output",
                        "call_id": msg.tool_call_id or "",
                        "output": msg.content,
                    }
                )
                continue
            if msg.content or not msg.tool_calls:
                items.append({"role": msg.role, "content": msg.content})
            items.extend(
                {
                    "type": "function_call",
                    "call_id": c.id,
                    "name": c.name,
                    "arguments": msgspec.json.encode(c.arguments).decode(),
                }
                for c in msg.tool_calls
            )
        body: dict[str, Any] = {
            "model": self.model,
            "input": items,
            "max_output_tokens": request.max_tokens,
            "store": False,
        }
        if instructions:
            body["instructions"] = instructions
        if caps.temperature:
            body["temperature"] = request.temperature
        if caps.reasoning and request.reasoning_effort is not None:
            body["reasoning"] = {"effort": request.reasoning_effort}
        fmt = request.response_format
        if fmt is not None:
            body["text"] = {
                "format": {
                    "type": "json_schema",
                    "name": fmt.name,
                    "schema": fmt.schema,
                    "strict": fmt.strict,
                }
            }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                    "strict": False,
                }
                for t in request.tools
            ]
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if stream:
            body["stream"] = True
        return body

    def _decode(self, data: dict[str, Any]) -> tuple[Message, str, Usage]:
        try:
            return _decode_response(data, self.name)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise BadModelResponse(
                f"{self.name}: response lacks the Responses API shape ({exc!r})", model=self.name
            ) from None

    def _assembler(self) -> StreamAssembler:
        return _ResponsesStream(self.name)


class OpenAIResponsesClient(OpenAIClient, OpenAIResponsesWire):
    """A model behind OpenAI's ``/responses`` endpoint (``Provider(wire="openai-responses")``).

    Same key, retry, breaker and limits as :class:`OpenAIClient`; reasoning
    models get ``reasoning: {effort}`` and no ``temperature``; structured output
    is ``text.format`` with the JSON schema.
    """

    def _endpoint(self) -> str:
        return f"{self.base_url}/responses"


def responses_usage(raw: Any) -> Usage:
    """A Responses API ``usage`` object as :class:`Usage`."""
    if not isinstance(raw, dict):
        return Usage()
    input_details = raw.get("input_tokens_details") or {}
    output_details = raw.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("input_tokens") or 0),
        completion_tokens=int(raw.get("output_tokens") or 0),
        cached_tokens=int(input_details.get("cached_tokens") or 0),
        reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
    )


def _decode_response(data: dict[str, Any], model: str) -> tuple[Message, str, Usage]:
    text: list[str] = []
    calls: list[ToolCall] = []
    for item in data["output"]:
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    text.append(str(part["text"]))
                elif part.get("type") == "refusal":
                    raise ContentFiltered(
                        f"{model}: the model refused: {part.get('refusal')}", model=model
                    )
        elif kind == "function_call":
            calls.append(
                ToolCall(
                    id=str(item["call_id"]),
                    name=str(item["name"]),
                    arguments=parse_arguments(item.get("arguments") or "{}"),
                )
            )
    status = str(data.get("status") or "completed")
    if status == "failed":
        error = data.get("error") or {}
        raise BadModelResponse(f"{model}: the response failed: {error.get('message')}", model=model)
    finish = "tool_calls" if calls else "stop"
    if status == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        if reason == "content_filter":
            raise ContentFiltered(f"{model}: the answer was filtered", model=model)
        finish = "length"
    message = Message(role="assistant", content="".join(text), tool_calls=tuple(calls))
    return message, finish, responses_usage(data.get("usage"))


class _ResponsesStream(StreamAssembler):
    """Responses API stream events: ``response.output_text.delta`` pieces,
    ``response.output_item.done`` for each finished tool call, and the whole
    response in ``response.completed`` (or ``response.incomplete``)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.final: dict[str, Any] | None = None

    def feed(self, event: SSEvent) -> list[StreamDelta]:
        kind = str(event.data.get("type") or event.event)
        if kind == "response.output_text.delta":
            return [StreamDelta(text=str(event.data.get("delta") or ""))]
        if kind == "response.output_item.done":
            item = event.data.get("item") or {}
            if item.get("type") == "function_call":
                try:
                    call = ToolCall(
                        id=str(item["call_id"]),
                        name=str(item["name"]),
                        arguments=parse_arguments(item.get("arguments") or "{}"),
                    )
                except (KeyError, ValueError) as exc:
                    raise BadModelResponse(
                        f"{self.model}: streamed tool call is malformed ({exc!r})", model=self.model
                    ) from None
                return [StreamDelta(tool_call=call)]
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = event.data.get("response")
        elif kind == "error":
            raise BadModelResponse(
                f"{self.model}: the stream reported an error: {event.data.get('message')}",
                model=self.model,
            )
        return []

    def result(self) -> tuple[Message, str, Usage]:
        if not isinstance(self.final, dict):
            raise BadModelResponse(
                f"{self.model}: the stream ended without response.completed", model=self.model
            )
        try:
            return _decode_response(self.final, self.model)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise BadModelResponse(
                f"{self.model}: streamed response lacks the Responses API shape ({exc!r})",
                model=self.model,
            ) from None
