"""The OpenAI Chat Completions wire format (OpenAI, Azure-style gateways, vLLM, the sim…).

Each request is encoded from the model's capabilities (:mod:`._capabilities`):
``max_completion_tokens`` and ``reasoning_effort`` for reasoning models, no
``temperature`` where the model refuses it, ``response_format`` with a JSON
schema for structured output. Cached prompt tokens (OpenAI caches repeated
prefixes by itself) and reasoning tokens are read from the usage.
"""

from __future__ import annotations

from typing import Any

import msgspec

from stalwart.errors import BadModelResponse
from stalwart.llm._client import HTTPModelClient, StreamAssembler, WireFormat
from stalwart.llm._sse import SSEvent
from stalwart.llm._types import Message, ModelRequest, StreamDelta, ToolCall, Usage

__all__ = ["OpenAIChatWire", "OpenAIClient", "parse_arguments"]


class OpenAIChatWire(WireFormat):
    """The Chat Completions wire format of one model (encode, decode, stream events)."""

    provider = "openai"
    wire = "openai"

    def _encode(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        caps = self.capabilities
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_encode_message(msg) for msg in request.messages],
            caps.max_tokens_param: request.max_tokens,
        }
        if caps.temperature:
            body["temperature"] = request.temperature
        if caps.reasoning and request.reasoning_effort is not None:
            body["reasoning_effort"] = request.reasoning_effort
        fmt = request.response_format
        if fmt is not None:
            if caps.json_schema:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": fmt.name, "schema": fmt.schema, "strict": fmt.strict},
                }
            else:
                body["response_format"] = {"type": "json_object"}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.tools and request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
        return body

    def _decode(self, data: dict[str, Any]) -> tuple[Message, str, Usage]:
        try:
            choice = data["choices"][0]
            raw = choice["message"]
            calls = tuple(
                ToolCall(
                    id=str(c["id"]),
                    name=str(c["function"]["name"]),
                    arguments=parse_arguments(c["function"].get("arguments") or "{}"),
                )
                for c in raw.get("tool_calls") or ()
            )
            message = Message(role="assistant", content=raw.get("content") or "", tool_calls=calls)
            usage = chat_usage(data.get("usage"))
            return message, str(choice.get("finish_reason") or "stop"), usage
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise BadModelResponse(
                f"{self.name}: response lacks the chat-completion shape ({exc!r})", model=self.name
            ) from None

    def _assembler(self) -> StreamAssembler:
        return _ChatStream(self.name)


class OpenAIClient(HTTPModelClient, OpenAIChatWire):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` is the API root (``https://api.openai.com/v1``, or the sim's
    ``http://127.0.0.1:PORT/v1``); ``api_key`` a key or a function returning the
    current one. See :class:`HTTPModelClient` for retries, breaker and limits.
    """

    provider = "openai"
    wire = "openai"

    def _endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers


def chat_usage(raw: Any) -> Usage:
    """A Chat Completions ``usage`` object (``None`` when absent) as :class:`Usage`."""
    if not isinstance(raw, dict):
        return Usage()
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(prompt_details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


class _ChatStream(StreamAssembler):
    """``chat.completion.chunk`` events: text deltas, tool calls built up by ``index``
    (the id and name arrive first, the arguments in pieces), usage in the last chunk."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish = "stop"
        self.finished = False
        self.usage = Usage()

    def feed(self, event: SSEvent) -> list[StreamDelta]:
        data = event.data
        if isinstance(data.get("error"), dict):
            raise BadModelResponse(
                f"{self.model}: the stream reported an error: {data['error'].get('message')}",
                model=self.model,
            )
        if data.get("usage"):
            self.usage = chat_usage(data["usage"])
        out: list[StreamDelta] = []
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.text.append(str(delta["content"]))
                out.append(StreamDelta(text=str(delta["content"])))
            for piece in delta.get("tool_calls") or ():
                call = self.calls.setdefault(
                    int(piece.get("index", 0)), {"id": "", "name": "", "arguments": ""}
                )
                fn = piece.get("function") or {}
                call["id"] = str(piece.get("id") or call["id"])
                call["name"] = str(fn.get("name") or call["name"])
                call["arguments"] += str(fn.get("arguments") or "")
            if choice.get("finish_reason"):
                self.finished = True
                self.finish = str(choice["finish_reason"])
                out.extend(StreamDelta(tool_call=c) for c in self._calls())
        return out

    def _calls(self) -> list[ToolCall]:
        try:
            return [
                ToolCall(
                    id=c["id"], name=c["name"], arguments=parse_arguments(c["arguments"] or "{}")
                )
                for _, c in sorted(self.calls.items())
            ]
        except ValueError as exc:
            raise BadModelResponse(f"{self.model}: streamed {exc}", model=self.model) from None

    def result(self) -> tuple[Message, str, Usage]:
        if not self.finished:
            raise BadModelResponse(
                f"{self.model}: the stream ended before the answer did (no finish_reason)",
                model=self.model,
            )
        message = Message(
            role="assistant", content="".join(self.text), tool_calls=tuple(self._calls())
        )
        return message, self.finish, self.usage


def parse_arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = msgspec.json.decode(str(raw))
    except msgspec.DecodeError as exc:
        raise ValueError(f"tool-call arguments are not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("tool-call arguments are not a JSON object")
    return value


def _encode_message(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": msg.role, "content": msg.content}
    if msg.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": msgspec.json.encode(c.arguments).decode(),
                },
            }
            for c in msg.tool_calls
        ]
        if not msg.content:
            out["content"] = None
    if msg.tool_call_id is not None:
        out["tool_call_id"] = msg.tool_call_id
    if msg.name is not None:
        out["name"] = msg.name
    return out
