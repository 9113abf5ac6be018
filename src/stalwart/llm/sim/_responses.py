"""The sim's OpenAI Responses API route (``POST /v1/responses``), plain and streamed."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from stalwart.llm.sim._brain import Reply, count_tokens
from stalwart.llm.sim._server import (
    MODELS,
    _answer,
    _error,
    _prompt_tokens,
    _refusal,
    openai_request,
)
from stalwart.llm.sim._wires import reasoning_refusal, responses_events, structured_value

__all__ = ["responses"]


def _messages(data: dict[str, Any]) -> list[dict[str, Any]] | str:
    """The Responses ``input`` (a string or items) and ``instructions`` as chat messages."""
    out: list[dict[str, Any]] = []
    if data.get("instructions"):
        out.append({"role": "system", "content": str(data["instructions"])})
    raw = data.get("input")
    if isinstance(raw, str):
        return [*out, {"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        return "'input' must be a string or a non-empty list of items"
    names: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, dict):
            return f"invalid input item: {str(item)[:100]}"
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, list):  # input_text / output_text parts
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            role = "system" if item.get("role") == "developer" else item.get("role")
            out.append({"role": role, "content": str(content or "")})
        elif kind == "function_call":
            names[str(item.get("call_id"))] = str(item.get("name"))
            out.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": item.get("call_id"),
                            "function": {
                                "name": item.get("name"),
                                "arguments": item.get("arguments"),
                            },
                        }
                    ],
                }
            )
        elif kind == "function_call_output":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": str(item.get("output") or ""),
                }
            )
        else:
            return f"unsupported input item type {kind!r}"
    return out


async def responses(request: Request) -> Response:
    admitted = await openai_request(request)
    if isinstance(admitted, Response):
        return admitted
    world, data, model = admitted
    if MODELS[model].get("reasoning"):
        refusal = reasoning_refusal(data, "responses")
        if refusal is not None:
            return _refusal(*refusal)
    elif data.get("reasoning"):
        return _refusal(
            "Unsupported parameter: 'reasoning.effort' is not supported with this model.",
            "unsupported_parameter",
            "reasoning.effort",
        )
    messages = _messages(data)
    if isinstance(messages, str):
        return _error(400, messages, "invalid_request_error")
    tool_defs = [t for t in data.get("tools") or () if isinstance(t, dict) and t.get("name")]
    result = _answer(world, model, messages, [str(t["name"]) for t in tool_defs])
    if isinstance(result, Response):
        return result
    reply, prompt = result
    fmt = (data.get("text") or {}).get("format") if isinstance(data.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        value = structured_value(
            fmt.get("schema") or {"type": "object"},
            reply.content,
            str(MODELS[model]["persona"]),
            messages,
        )
        reply = Reply(content=json.dumps(value))
    n = world.next_id()
    output: list[dict[str, Any]] = []
    reasoning = 0
    if MODELS[model].get("reasoning"):
        reasoning = 16
        output.append({"type": "reasoning", "id": f"rs_sim_{n}", "summary": []})
    if reply.content:
        output.append(
            {
                "type": "message",
                "id": f"msg_sim_{n}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.content, "annotations": []}],
            }
        )
    output.extend(
        {
            "type": "function_call",
            "id": f"fc_sim_{n}_{i}",
            "call_id": f"call_{n}_{i}",
            "name": name,
            "arguments": json.dumps(args),
            "status": "completed",
        }
        for i, (name, args) in enumerate(reply.tool_calls)
    )
    instructions = data.get("instructions")
    prefix = (instructions, tool_defs)
    prefix_tokens = _prompt_tokens([{"content": instructions or ""}], tool_defs)
    cached = prefix_tokens if world.cache.use(model, prefix, tokens=prefix_tokens) else 0
    completion = count_tokens(reply.content) + sum(
        8 + count_tokens(json.dumps(args)) for _, args in reply.tool_calls
    )
    body: dict[str, Any] = {
        "id": f"resp_sim_{n}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": instructions,
        "max_output_tokens": data.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": data.get("parallel_tool_calls", True),
        "temperature": data.get("temperature", 1.0),
        "tool_choice": "auto",
        "tools": data.get("tools") or [],
        "top_p": 1.0,
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": min(cached, prompt)},
            "output_tokens": completion + reasoning,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion + reasoning,
        },
    }
    if data.get("stream"):
        return StreamingResponse(responses_events(body), media_type="text/event-stream")
    return JSONResponse(body)
