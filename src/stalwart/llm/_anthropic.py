"""The Anthropic Messages API wire format.

Prompt caching is explicit on this API: with ``ModelRequest.cache`` (the
default) the system prompt and the tool list, the prefix every call of an
agent repeats, are marked ``cache_control: {"type": "ephemeral"}``; the usage
then reports ``cache_read_input_tokens`` and ``cache_creation_input_tokens``,
which stalwart adds to ``prompt_tokens`` (Anthropic's ``input_tokens`` leaves
them out) and reports as ``cached_tokens`` / ``cache_write_tokens``.
Structured output is a forced call of a tool named ``structured_output`` whose
input schema is the requested schema; its input becomes the answer's text.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stalwart.errors import BadModelResponse, ConfigError, ContentFiltered
from stalwart.llm._client import HTTPModelClient, StreamAssembler, WireFormat
from stalwart.llm._sse import SSEvent
from stalwart.llm._types import Message, ModelRequest, StreamDelta, ToolCall, Usage

__all__ = ["OUTPUT_TOOL", "AnthropicClient", "AnthropicWire"]

API_VERSION = "2023-06-01"
OUTPUT_TOOL = "structured_output"
"""The tool a structured-output request forces the model to call."""
_CACHE = {"type": "ephemeral"}

# Anthropic's stop reasons, in OpenAI's vocabulary (what the rest of stalwart speaks).
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicWire(WireFormat):
    """The Messages API wire format of one model (encode, decode, stream events).

    System turns become the top-level ``system`` field; tool results are sent
    as ``tool_result`` blocks in a user turn, as the API requires.
    """

    provider = "anthropic"
    wire = "anthropic"

    def _encode(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        turns: list[dict[str, Any]] = []
        for msg in request.messages:
            if msg.role == "system":
                continue
            if msg.role == "tool":
                block = {
                    "type": "tool_result",
                    "tool_use_id": msg.tool_call_id,
                    "content": msg.content,
                }
                if turns and turns[-1]["role"] == "user" and isinstance(turns[-1]["content"], list):
                    turns[-1]["content"].append(block)
                else:
                    turns.append({"role": "user", "content": [block]})
            elif msg.role == "assistant" and msg.tool_calls:
                blocks: list[dict[str, Any]] = []
                if msg.content:
                    blocks.append({"type": "text", "text": msg.content})
                blocks.extend(
                    {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                    for c in msg.tool_calls
                )
                turns.append({"role": "assistant", "content": blocks})
            else:
                turns.append({"role": msg.role, "content": msg.content})
        caps = self.capabilities
        cache = request.cache and caps.prompt_cache == "explicit"
        body: dict[str, Any] = {"model": self.model, "max_tokens": request.max_tokens}
        if caps.temperature:
            body["temperature"] = request.temperature
        if system:
            system_block: dict[str, Any] = {"type": "text", "text": system}
            if cache:
                system_block["cache_control"] = _CACHE
            body["system"] = [system_block]
        body["messages"] = turns
        tools: list[dict[str, Any]] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in request.tools
        ]
        fmt = request.response_format
        if fmt is not None:
            if any(t.name == OUTPUT_TOOL for t in request.tools):
                raise ConfigError(
                    f"{self.name}: a tool may not be named {OUTPUT_TOOL!r} in a request for "
                    "structured output (that name carries the answer on the Anthropic API)"
                )
            tools.append(
                {
                    "name": OUTPUT_TOOL,
                    "description": f"Give the answer as {fmt.name}.",
                    "input_schema": fmt.schema,
                }
            )
            body["tool_choice"] = {"type": "tool", "name": OUTPUT_TOOL}
        elif request.tools and request.parallel_tool_calls is False:
            body["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
        if tools:
            if cache:
                tools[-1] = {**tools[-1], "cache_control": _CACHE}
            body["tools"] = tools
        if stream:
            body["stream"] = True
        return body

    def _decode(self, data: dict[str, Any]) -> tuple[Message, str, Usage]:
        try:
            message, finish = _message(data["content"], str(data.get("stop_reason")))
            usage = anthropic_usage(data.get("usage"))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadModelResponse(
                f"{self.name}: response lacks the Messages API shape ({exc!r})", model=self.name
            ) from None
        if finish == "content_filter":
            raise ContentFiltered(
                f"{self.name}: the model refused (stop_reason=refusal)", model=self.name
            )
        return message, finish, usage

    def _assembler(self) -> StreamAssembler:
        return _MessagesStream(self.name)


class AnthropicClient(HTTPModelClient, AnthropicWire):
    """A model behind Anthropic's ``/v1/messages`` endpoint (see :class:`AnthropicWire`)."""

    provider = "anthropic"
    wire = "anthropic"

    def _endpoint(self) -> str:
        return f"{self.base_url}/v1/messages"

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers


def anthropic_usage(raw: Any) -> Usage:
    """A Messages API ``usage`` as :class:`Usage` (cache reads and writes counted in)."""
    if not isinstance(raw, dict):
        return Usage()
    read = int(raw.get("cache_read_input_tokens") or 0)
    written = int(raw.get("cache_creation_input_tokens") or 0)
    return Usage(
        prompt_tokens=int(raw.get("input_tokens") or 0) + read + written,
        completion_tokens=int(raw.get("output_tokens") or 0),
        cached_tokens=read,
        cache_write_tokens=written,
    )


def _message(blocks: list[dict[str, Any]], stop_reason: str) -> tuple[Message, str]:
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        if block["type"] == "text":
            text.append(str(block["text"]))
        elif block["type"] == "tool_use":
            if not isinstance(block["input"], dict):
                raise ValueError("tool_use input is not an object")
            if block["name"] == OUTPUT_TOOL:  # the structured answer
                text.append(msgspec.json.encode(block["input"]).decode())
                stop_reason = "end_turn"
                continue
            calls.append(
                ToolCall(id=str(block["id"]), name=str(block["name"]), arguments=block["input"])
            )
    finish = _FINISH.get(stop_reason, "stop")
    return Message(role="assistant", content="".join(text), tool_calls=tuple(calls)), finish


class _MessagesStream(StreamAssembler):
    """Messages API stream events: ``message_start`` (input usage), ``content_block_start``
    / ``_delta`` (``text_delta``, ``input_json_delta``) / ``_stop``, ``message_delta`` (stop
    reason, output usage), ``message_stop``; ``ping`` is ignored, ``error`` raises."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.blocks: dict[int, dict[str, Any]] = {}
        self.partial: dict[int, list[str]] = {}
        self.usage: dict[str, Any] = {}
        self.stop_reason = "end_turn"
        self.stopped = False

    def feed(self, event: SSEvent) -> list[StreamDelta]:
        data = event.data
        kind = str(data.get("type") or event.event)
        index = int(data.get("index") or 0)
        if kind == "message_start":
            self.usage.update((data.get("message") or {}).get("usage") or {})
        elif kind == "content_block_start":
            block = dict(data.get("content_block") or {})
            self.blocks[index] = block
            self.partial[index] = []
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            block = self.blocks.setdefault(index, {"type": "text", "text": ""})
            if delta.get("type") == "text_delta":
                block["text"] = str(block.get("text") or "") + str(delta.get("text") or "")
                return [StreamDelta(text=str(delta.get("text") or ""))]
            if delta.get("type") == "input_json_delta":
                self.partial.setdefault(index, []).append(str(delta.get("partial_json") or ""))
        elif kind == "content_block_stop":
            return self._finish_block(index)
        elif kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self.stop_reason = str(reason)
            self.usage.update(data.get("usage") or {})
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            error = data.get("error") or {}
            raise BadModelResponse(
                f"{self.model}: the stream reported {error.get('type')}: {error.get('message')}",
                model=self.model,
            )
        return []

    def _finish_block(self, index: int) -> list[StreamDelta]:
        block = self.blocks.get(index) or {}
        if block.get("type") != "tool_use":
            return []
        raw = "".join(self.partial.get(index) or ()) or "{}"
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise BadModelResponse(
                f"{self.model}: streamed tool input is not JSON ({exc})", model=self.model
            ) from None
        if not isinstance(value, dict):
            raise BadModelResponse(
                f"{self.model}: streamed tool input is not an object", model=self.model
            )
        block["input"] = value
        if block.get("name") == OUTPUT_TOOL:
            return [StreamDelta(text=msgspec.json.encode(value).decode())]
        return [
            StreamDelta(
                tool_call=ToolCall(
                    id=str(block.get("id")), name=str(block.get("name")), arguments=value
                )
            )
        ]

    def result(self) -> tuple[Message, str, Usage]:
        if not self.stopped:
            raise BadModelResponse(
                f"{self.model}: the stream ended before the answer did (no message_stop)",
                model=self.model,
            )
        try:
            blocks = [self.blocks[i] for i in sorted(self.blocks)]
            for block in blocks:
                block.setdefault("input", {})
            message, finish = _message(blocks, self.stop_reason)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadModelResponse(
                f"{self.model}: streamed message lacks the Messages API shape ({exc!r})",
                model=self.model,
            ) from None
        if finish == "content_filter":
            raise ContentFiltered(
                f"{self.model}: the model refused (stop_reason=refusal)", model=self.model
            )
        return message, finish, anthropic_usage(self.usage)
