"""The Anthropic Messages API wire format."""

from __future__ import annotations

from typing import Any

from stalwart.errors import BadModelResponse, ContentFiltered
from stalwart.llm._client import HTTPModelClient
from stalwart.llm._types import Message, ModelRequest, ToolCall, Usage

__all__ = ["AnthropicClient"]

API_VERSION = "2023-06-01"

# Anthropic's stop reasons, in OpenAI's vocabulary (what the rest of stalwart speaks).
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicClient(HTTPModelClient):
    """A model behind Anthropic's ``/v1/messages`` endpoint.

    System turns become the top-level ``system`` field; tool results are sent
    as ``tool_result`` blocks in a user turn, as the API requires.
    """

    provider = "anthropic"

    def _endpoint(self) -> str:
        return f"{self.base_url}/v1/messages"

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers

    def _encode(self, request: ModelRequest) -> dict[str, Any]:
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
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": turns,
            "temperature": request.temperature,
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        return body

    def _decode(self, data: dict[str, Any]) -> tuple[Message, str, Usage]:
        try:
            text: list[str] = []
            calls: list[ToolCall] = []
            for block in data["content"]:
                if block["type"] == "text":
                    text.append(str(block["text"]))
                elif block["type"] == "tool_use":
                    if not isinstance(block["input"], dict):
                        raise ValueError("tool_use input is not an object")
                    calls.append(
                        ToolCall(
                            id=str(block["id"]), name=str(block["name"]), arguments=block["input"]
                        )
                    )
            finish = _FINISH.get(str(data.get("stop_reason")), "stop")
            usage_raw = data.get("usage") or {}
            usage = Usage(
                int(usage_raw.get("input_tokens", 0)), int(usage_raw.get("output_tokens", 0))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadModelResponse(
                f"{self.name}: response lacks the Messages API shape ({exc!r})", model=self.name
            ) from None
        if finish == "content_filter":
            raise ContentFiltered(
                f"{self.name}: the model refused (stop_reason=refusal)", model=self.name
            )
        return (
            Message(role="assistant", content="".join(text), tool_calls=tuple(calls)),
            finish,
            usage,
        )
