"""A model call's messages between the journal and the model clients: the journal's
OpenAI-format dicts as :class:`~stalwart.llm.Message` and back, and a streamed answer
published as it comes and returned whole (what the journal records)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from stalwart.errors import BadModelResponse
from stalwart.llm import (
    Message,
    ModelRequest,
    ModelResponse,
    StreamingModelClient,
    ToolCall,
    close_stream,
)

__all__ = ["assistant_message", "streamed", "to_message"]


def to_message(m: Mapping[str, Any]) -> Message:
    """The :class:`~stalwart.llm.Message` of an OpenAI-format message (a ``dict`` as the
    agent loop and the adapters keep their history)."""
    calls = tuple(
        ToolCall(
            id=str(c["id"]),
            name=str(c["function"]["name"]),
            arguments=msgspec.json.decode(c["function"]["arguments"]),
        )
        for c in m.get("tool_calls") or ()
    )
    return Message(
        role=m["role"],
        content=str(m.get("content") or ""),
        tool_calls=calls,
        tool_call_id=m.get("tool_call_id"),
        name=m.get("name"),
    )


async def streamed(
    client: StreamingModelClient,
    request: ModelRequest,
    *,
    timeout: float | None,
    publish: Callable[..., None] | None,
    task_id: str,
    seq: int,
    on_text: Callable[[str], None] | None = None,
) -> ModelResponse:
    """Stream one model answer, publishing its text as ``task.delta`` events (``publish``)
    and handing each piece to ``on_text``; the whole response (what the journal records).
    Events are ids ``seq:end-offset`` downstream, so a client that reconnects (or a task
    that resumes) never gets the same text twice."""
    offset = 0
    final: ModelResponse | None = None
    stream = client.stream(request, timeout=timeout)
    try:
        async for delta in stream:
            if delta.response is not None:
                final = delta.response
            elif delta.text:
                end = offset + len(delta.text)
                if publish is not None:
                    publish(
                        "task.delta", task_id=task_id, seq=seq, start=offset, end=end,
                        text=delta.text,
                    )  # fmt: skip
                if on_text is not None:
                    on_text(delta.text)
                offset = end
    finally:  # cancelled or failed here: the model's stream (and its call's span) ends now
        await close_stream(stream)
    if final is None:
        raise BadModelResponse(f"{client.name}: the stream ended without its final response")
    return final


def assistant_message(reply: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI-format assistant message for a journaled model reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply["content"]}
    if reply["tool_calls"]:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {
                    "name": c["name"],
                    "arguments": msgspec.json.encode(c["arguments"]).decode(),
                },
            }
            for c in reply["tool_calls"]
        ]
    return message
