"""What the sim's wire formats share beyond one answer: reasoning-model parameter rules,
structured output, prompt caching, and the server-sent event shapes of streaming.

- **Reasoning models** (``reasoner``): like OpenAI's o-series and gpt-5, they refuse
  ``max_tokens`` (400 ``unsupported_parameter``, "Use 'max_completion_tokens'
  instead") and any ``temperature`` but 1 (400 ``unsupported_value``), in OpenAI's
  words and error shape; their usage reports reasoning tokens.
- **Structured output**: given a JSON schema, the answer is a JSON object built from
  it (strings carry the brain's answer, integers a count…). The ``weak`` persona
  leaves out the required fields until the conversation holds a repair request
  (a user turn naming the validation errors), so tests can drive a repair.
- **Prompt caching**: a model remembers each prompt prefix (system prompt and tools)
  it has seen; a repeat reports the prefix's tokens as cached (OpenAI: automatic;
  Anthropic: only for a prefix marked ``cache_control``, written on first use).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from stalwart.llm.sim._brain import count_tokens

__all__ = [
    "REPAIR_MARKER",
    "anthropic_events",
    "chat_chunks",
    "reasoning_refusal",
    "responses_events",
    "sse",
    "stream_cut",
    "structured_value",
]

REPAIR_MARKER = "did not match the schema"
"""A user turn containing this asks the model to repair its structured answer
(:func:`stalwart.llm.structured` writes it)."""


def reasoning_refusal(data: dict[str, Any], wire: str) -> tuple[str, str, str] | None:
    """``(message, code, param)`` of the 400 a reasoning model answers ``data`` with, or None."""
    if wire == "chat" and "max_tokens" in data:
        return (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "unsupported_parameter",
            "max_tokens",
        )
    temperature = data.get("temperature")
    if temperature is not None and temperature != 1:
        return (
            f"Unsupported value: 'temperature' does not support {temperature} with this model. "
            "Only the default (1) value is supported.",
            "unsupported_value",
            "temperature",
        )
    return None


def structured_value(
    schema: dict[str, Any], answer: str, persona: str, messages: list[dict[str, Any]]
) -> dict[str, Any]:
    """A JSON object for ``schema`` (see the module docstring)."""
    repaired = any(
        m.get("role") == "user" and REPAIR_MARKER in str(m.get("content") or "") for m in messages
    )
    value = _value(schema, answer, schema.get("$defs") or {})
    if not isinstance(value, dict):
        return {"value": value}
    if persona == "weak" and not repaired:
        for name in schema.get("required") or ():
            value.pop(name, None)
        value["note"] = answer[:80]
    return value


def _value(schema: dict[str, Any], answer: str, defs: dict[str, Any]) -> Any:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _value(defs.get(ref.removeprefix("#/$defs/"), {}), answer, defs)
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return _value(schema[key][0], answer, defs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: _value(sub, answer, defs) for name, sub in props.items()}
    if kind == "array":
        return [_value(schema.get("items") or {"type": "string"}, answer, defs)]
    if kind == "integer":
        return count_tokens(answer)
    if kind == "number":
        return float(count_tokens(answer))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return answer


class PromptCache:
    """The prefixes each model has seen (see the module docstring)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def use(self, model: str, prefix: Any, *, tokens: int) -> bool:
        """Record ``prefix``; True if ``model`` had seen it before (a cache hit)."""
        key = hashlib.sha256(f"{model}\0{json.dumps(prefix, sort_keys=True)}".encode()).hexdigest()
        hit = key in self._seen
        self._seen.add(key)
        return hit and tokens > 0


def sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def _pieces(text: str, size: int = 12) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or []


def chat_chunks(
    *,
    ident: str,
    model: str,
    created: int,
    content: str,
    calls: list[dict[str, Any]],
    finish: str,
    usage: dict[str, Any],
) -> Iterator[bytes]:
    """A Chat Completions stream: role, content pieces, tool calls (id and name, then the
    arguments in two pieces), the finish reason, the usage chunk, ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return sse(
            None,
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            },
        )

    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(content):
        yield chunk({"content": piece})
    for index, call in enumerate(calls):
        args = call["function"]["arguments"]
        half = len(args) // 2
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": args[:half]},
                    }
                ]
            }
        )
        yield chunk({"tool_calls": [{"index": index, "function": {"arguments": args[half:]}}]})
    yield chunk({}, finish)
    yield sse(
        None,
        {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        },
    )
    yield sse(None, "[DONE]")


def responses_events(response: dict[str, Any]) -> Iterator[bytes]:
    """A Responses API stream for the finished ``response``: created, then per output
    item its added / delta / done events, then ``response.completed``."""
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        seq += 1
        return sse(kind, {"type": kind, "sequence_number": seq, **fields})

    opening = {**response, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=opening)
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": "", "annotations": []}
            yield event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
            for piece in _pieces(text):
                yield event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    delta=piece,
                    logprobs=[],
                )
            yield event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            yield event(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part={**part, "text": text},
            )
        elif item["type"] == "function_call":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            yield event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=index,
                delta=item["arguments"],
            )
            yield event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=response)


def anthropic_events(message: dict[str, Any]) -> Iterator[bytes]:
    """A Messages API stream for the finished ``message``: ``message_start`` (input usage),
    each block's start / deltas / stop, a ``ping``, ``message_delta`` (stop reason, output
    usage), ``message_stop``."""
    usage = message["usage"]
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield sse("message_start", {"type": "message_start", "message": start})
    yield sse("ping", {"type": "ping"})
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _pieces(block["text"]):
                yield sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        else:
            yield sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "input": {}},
                },
            )
            raw = json.dumps(block["input"])
            for piece in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                yield sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield sse("message_stop", {"type": "message_stop"})


def stream_cut(wire: str) -> Iterator[bytes]:
    """The start of a stream and its first piece of text, then the end of the body (the
    ``stream_cut`` fault: a connection lost mid-answer)."""
    if wire == "anthropic":
        start: dict[str, Any] = {
            "id": "msg_cut",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "cut",
            "stop_reason": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
        yield sse("message_start", {"type": "message_start", "message": start})
        yield sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        yield sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "The cap"},
            },
        )
        return
    yield sse(
        None,
        {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": 0, "model": "cut",
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": "The cap"},
                      "finish_reason": None}]},
    )  # fmt: skip
