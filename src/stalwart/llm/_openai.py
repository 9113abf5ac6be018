"""The OpenAI chat-completions wire format (OpenAI, Azure-style gateways, vLLM, the sim…)."""

from __future__ import annotations

from typing import Any

import msgspec

from stalwart.errors import BadModelResponse
from stalwart.llm._client import HTTPModelClient
from stalwart.llm._types import Message, ModelRequest, ToolCall, Usage

__all__ = ["OpenAIClient"]


class OpenAIClient(HTTPModelClient):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` is the API root (``https://api.openai.com/v1``, or the sim's
    ``http://127.0.0.1:PORT/v1``); ``api_key`` a key or a function returning the
    current one. See :class:`HTTPModelClient` for retries, breaker and limits.
    """

    provider = "openai"

    def _endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def _encode(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_encode_message(msg) for msg in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
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
                    arguments=_arguments(c["function"].get("arguments") or "{}"),
                )
                for c in raw.get("tool_calls") or ()
            )
            message = Message(role="assistant", content=raw.get("content") or "", tool_calls=calls)
            usage_raw = data.get("usage") or {}
            usage = Usage(
                int(usage_raw.get("prompt_tokens", 0)), int(usage_raw.get("completion_tokens", 0))
            )
            return message, str(choice.get("finish_reason") or "stop"), usage
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise BadModelResponse(
                f"{self.name}: response lacks the chat-completion shape ({exc!r})", model=self.name
            ) from None


def _arguments(raw: Any) -> dict[str, Any]:
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
