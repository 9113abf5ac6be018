"""The simulated model world as an HTTP server (OpenAI and Anthropic wire formats).

Routes:

- ``POST /v1/chat/completions`` — OpenAI chat completions, tools included; the
  official ``openai`` client works against it unchanged.
- ``POST /v1/responses`` — the OpenAI Responses API.
- ``POST /v1/messages`` — the Anthropic Messages API shape.
- ``GET /v1/models`` — the models: ``strong``, ``weak``, ``gullible``, ``reasoner``
  (a reasoning model: see :mod:`._wires`).

Every model route streams (server-sent events in the provider's shapes) when the
request says ``"stream": true``, answers structured output for a JSON schema,
and reports cached prompt tokens (see :mod:`._wires`).
- ``POST/DELETE /_sim/faults``, ``POST /_sim/keys``, ``GET /_sim/stats`` — control.
- ``/tools/...`` — simulated tool services (see :mod:`._tools`),
  ``GET /tools/_report`` — their per-key delivery counts.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from stalwart.errors import ConfigError, StartError
from stalwart.llm.sim._brain import Brain, Reply, Scenario, count_tokens
from stalwart.llm.sim._faults import Fault, FaultBook
from stalwart.llm.sim._tools import ToolServices, order_for
from stalwart.llm.sim._wires import (
    PromptCache,
    anthropic_events,
    chat_chunks,
    reasoning_refusal,
    stream_cut,
    structured_value,
)

__all__ = ["MODELS", "SimServer", "SimWorld", "build_app"]

MODELS: dict[str, dict[str, Any]] = {
    "strong": {"context_tokens": 128_000, "persona": "strong"},
    "weak": {"context_tokens": 16_000, "persona": "weak"},
    "gullible": {"context_tokens": 128_000, "persona": "gullible"},
    "reasoner": {"context_tokens": 128_000, "persona": "strong", "reasoning": True},
}
MAX_BODY = 4 * 1024 * 1024


class SimWorld:
    """Everything the sim knows: brain, faults, keys, tool services, counters."""

    def __init__(self, scenario: Scenario | None = None) -> None:
        self.brain = Brain(scenario)
        self.faults = FaultBook()
        self.tools = ToolServices()
        self.keys: dict[str, set[str]] = {}
        self.stats: Counter[str] = Counter()
        self.keys_seen: Counter[str] = Counter()
        self.arrivals: dict[str, collections.deque[float]] = collections.defaultdict(
            lambda: collections.deque(maxlen=10_000)
        )
        """Monotonic arrival times of each model's requests (retry timelines: EH-1)."""
        self._ids = itertools.count(1)
        self.cache = PromptCache()

    def set_fault(self, target: str, **fault: Any) -> None:
        self.faults.set(target, Fault(**fault))

    def clear_faults(self, target: str | None = None) -> None:
        self.faults.clear(target)

    def set_keys(self, model: str, keys: list[str] | None) -> None:
        """Require one of ``keys`` as the API key of ``model`` (None: no check)."""
        if keys is None:
            self.keys.pop(model, None)
        else:
            self.keys[model] = set(keys)

    def next_id(self) -> int:
        return next(self._ids)


def _error(
    status: int,
    message: str,
    code: str,
    headers: dict[str, str] | None = None,
    wire: str = "openai",
) -> JSONResponse:
    """An error body in the wire format's documented shape."""
    if wire == "anthropic":
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            413: "request_too_large",
            429: "rate_limit_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": code, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _read_json(request: Request) -> dict[str, Any] | JSONResponse:
    try:
        body = await request.body()
    except ClientDisconnect:  # the caller went away mid-request (a SIGKILLed agent): no
        # traceback on the terminal of whoever runs the sim, such as stalwart verify
        return _error(499, "the client closed the connection", "client_closed_request")
    if len(body) > MAX_BODY:
        return _error(413, f"request body over {MAX_BODY} bytes", "request_too_large")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _error(400, f"invalid JSON body: {exc}", "invalid_request_error")
    if not isinstance(data, dict):
        return _error(400, "the body must be a JSON object", "invalid_request_error")
    return data


async def _apply_fault(
    world: SimWorld, target: str, request: Request, wire: str = "openai"
) -> Response | None:
    fault = world.faults.get(target)
    if fault is None or (fault.skip and world.faults.skips(target, fault)):
        return None
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.hang:
        deadline = time.monotonic() + fault.hang_s
        # polls the client: starlette offers no disconnect event to wait on
        while time.monotonic() < deadline and not await request.is_disconnected():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return _error(504, "the simulated hang ended", "hang", wire=wire)
    headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
    if fault.outage:
        world.stats[f"{target}:injected_error"] += 1
        return _error(
            503, f"{target} is down (simulated outage)", "service_unavailable", headers, wire
        )
    if fault.status is not None and world.faults.should_fail(target, fault):
        world.stats[f"{target}:injected_error"] += 1
        return _error(
            fault.status, f"simulated {fault.status} for {target}", "simulated", headers, wire
        )
    return None


class _Truncated(Response):
    """Declares a Content-Length and sends half of it, then ends the response."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b'{"id": "x", "choices": [{"message": {"content": "cut off here' + b" " * 200
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body) * 2).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _body_fault(kind: str, wire: str = "openai") -> Response:
    if kind == "stream_cut":
        return StreamingResponse(stream_cut(wire), media_type="text/event-stream")
    if kind == "malformed_json":
        return Response(b'{"choices": [ {"message": ', media_type="application/json")
    if kind == "truncated":
        return _Truncated()
    if kind == "html":
        return Response(b"<html><body>502 Bad Gateway</body></html>", media_type="text/html")
    if kind == "not_object":
        return Response(b'["a", "list"]', media_type="application/json")
    if kind == "wrong_shape":
        return Response(b'{"unexpected": true}', media_type="application/json")

    def huge() -> Iterator[bytes]:
        yield b'{"padding": "'
        for _ in range(12 * 1024):
            yield b"x" * 1024
        yield b'"}'

    return StreamingResponse(huge(), media_type="application/json")


async def _model_gate(
    world: SimWorld, request: Request, model: str, key: str | None, wire: str = "openai"
) -> Response | None:
    if model not in MODELS:
        return _error(
            404,
            f"the model {model!r} does not exist; try one of {sorted(MODELS)}",
            "model_not_found",
            wire=wire,
        )
    world.stats[f"{model}:requests"] += 1
    world.arrivals[model].append(time.monotonic())
    if key:
        world.keys_seen[f"{model}:{key[-6:]}"] += 1
    allowed = world.keys.get(model)
    if allowed is not None and key not in allowed:
        world.stats[f"{model}:unauthorized"] += 1
        return _error(401, "Incorrect API key provided", "invalid_api_key", wire=wire)
    fault = await _apply_fault(world, model, request, wire)
    if fault is not None:
        return fault
    body_fault = world.faults.get(model)
    if body_fault is not None and body_fault.body is not None:
        return _body_fault(body_fault.body, wire)
    return None


def _prompt_tokens(messages: list[dict[str, Any]], tools: list[Any]) -> int:
    text = json.dumps(tools) if tools else ""
    return count_tokens(text) + sum(4 + count_tokens(str(m.get("content") or "")) for m in messages)


def _answer(
    world: SimWorld,
    model: str,
    messages: list[dict[str, Any]],
    tool_names: list[str],
    wire: str = "openai",
) -> tuple[Reply, int] | Response:
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            return _error(
                400, f"invalid message: {str(m)[:100]}", "invalid_request_error", wire=wire
            )
    prompt = _prompt_tokens(messages, tool_names)
    limit = int(MODELS[model]["context_tokens"])
    if prompt > limit:
        message = (
            f"prompt is too long: {prompt} tokens > {limit} maximum"
            if wire == "anthropic"
            else f"This model's maximum context length is {limit} tokens. However, "
            f"your messages resulted in {prompt} tokens."
        )
        return _error(400, message, "context_length_exceeded", wire=wire)
    return world.brain.reply(messages, tool_names, str(MODELS[model]["persona"])), prompt


async def openai_request(request: Request) -> tuple[SimWorld, dict[str, Any], str] | Response:
    """An OpenAI-wire model request read and admitted (JSON body, bearer key, the model's
    faults and keys): the world, the body and the model, or the error to answer with.
    Chat Completions and the Responses API both start here."""
    world: SimWorld = request.app.state.world
    data = await _read_json(request)
    if isinstance(data, Response):
        return data
    model = str(data.get("model", ""))
    auth = request.headers.get("authorization", "")
    key = auth[7:] if auth.lower().startswith("bearer ") else None
    gate = await _model_gate(world, request, model, key)
    if gate is not None:
        return gate
    return world, data, model


async def chat_completions(request: Request) -> Response:
    admitted = await openai_request(request)
    if isinstance(admitted, Response):
        return admitted
    world, data, model = admitted
    if MODELS[model].get("reasoning"):
        refusal = reasoning_refusal(data, "chat")
        if refusal is not None:
            return _refusal(*refusal)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "'messages' must be a non-empty list", "invalid_request_error")
    tools = [
        t["function"]["name"]
        for t in data.get("tools") or ()
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    result = _answer(world, model, messages, tools)
    if isinstance(result, Response):
        return result
    reply, prompt = result
    schema = _chat_schema(data.get("response_format"))
    if schema is not None:
        persona = str(MODELS[model]["persona"])
        reply = Reply(
            content=json.dumps(structured_value(schema, reply.content, persona, messages))
        )
    n = world.next_id()
    calls = [
        {
            "id": f"call_{n}_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for i, (name, args) in enumerate(reply.tool_calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    if calls:
        message["tool_calls"] = calls
    completion = count_tokens(reply.content) + sum(
        8 + count_tokens(json.dumps(args)) for _, args in reply.tool_calls
    )
    prefix = [m for m in messages if m.get("role") == "system"], data.get("tools")
    prefix_tokens = _prompt_tokens(prefix[0], list(prefix[1] or ()))
    cached = prefix_tokens if world.cache.use(model, prefix, tokens=prefix_tokens) else 0
    reasoning = 16 if MODELS[model].get("reasoning") else 0
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion + reasoning,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": min(cached, prompt)},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    finish = "tool_calls" if calls else "stop"
    created = int(time.time())
    if data.get("stream"):
        chunks = chat_chunks(
            ident=f"chatcmpl-sim-{n}",
            model=model,
            created=created,
            content=reply.content,
            calls=calls,
            finish=finish,
            usage=usage,
        )
        return StreamingResponse(chunks, media_type="text/event-stream")
    return JSONResponse(
        {
            "id": f"chatcmpl-sim-{n}",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
    )


def _refusal(message: str, code: str, param: str) -> JSONResponse:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
    return JSONResponse(body, status_code=400)


def _chat_schema(fmt: Any) -> dict[str, Any] | None:
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return {"type": "object", "properties": {"answer": {"type": "string"}}}
    return None


async def anthropic_messages(request: Request) -> Response:
    world: SimWorld = request.app.state.world
    data = await _read_json(request)
    if isinstance(data, Response):
        return data
    model = str(data.get("model", ""))
    gate = await _model_gate(world, request, model, request.headers.get("x-api-key"), "anthropic")
    if gate is not None:
        return gate
    if not isinstance(data.get("max_tokens"), int):
        return _error(400, "max_tokens: field required", "invalid_request_error", wire="anthropic")
    messages: list[dict[str, Any]] = []
    system = data.get("system")
    if isinstance(system, list):  # text blocks (with cache_control)
        system = "".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
    if system:
        messages.append({"role": "system", "content": system})
    for turn in data.get("messages") or ():
        content = turn.get("content")
        if isinstance(content, str):
            messages.append({"role": turn.get("role"), "content": content})
            continue
        for block in content or ():
            if block.get("type") == "text":
                messages.append({"role": turn.get("role"), "content": block.get("text", "")})
            elif block.get("type") == "tool_use":
                messages.append(
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [{"id": block["id"], "function": {"name": block["name"]}}],
                    }
                )
            elif block.get("type") == "tool_result":
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": block.get("tool_use_id"),
                        "content": block.get("content", ""),
                    }
                )
    tool_defs = [t for t in data.get("tools") or () if isinstance(t, dict) and "name" in t]
    choice = data.get("tool_choice") or {}
    forced = (
        choice.get("name") if isinstance(choice, dict) and choice.get("type") == "tool" else None
    )
    tools = [t["name"] for t in tool_defs if t["name"] != forced]
    result = _answer(world, model, messages, tools, "anthropic")
    if isinstance(result, Response):
        return result
    reply, prompt = result
    n = world.next_id()
    blocks: list[dict[str, Any]] = []
    if forced is not None:  # structured output through a forced tool call
        schema = next((t.get("input_schema") for t in tool_defs if t["name"] == forced), None)
        value = structured_value(
            schema or {"type": "object"}, reply.content, str(MODELS[model]["persona"]), messages
        )
        reply = Reply(tool_calls=((str(forced), value),))
    if reply.content:
        blocks.append({"type": "text", "text": reply.content})
    blocks.extend(
        {"type": "tool_use", "id": f"toolu_{n}_{i}", "name": name, "input": args}
        for i, (name, args) in enumerate(reply.tool_calls)
    )
    usage = {
        "input_tokens": prompt,
        "output_tokens": count_tokens(reply.content) + 8 * len(reply.tool_calls),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    marked = _cache_marked(data)
    if marked is not None:
        prefix_tokens = min(prompt, _prompt_tokens([{"content": system or ""}], tool_defs))
        hit = world.cache.use(model, marked, tokens=prefix_tokens)
        usage["cache_read_input_tokens" if hit else "cache_creation_input_tokens"] = prefix_tokens
        usage["input_tokens"] = prompt - prefix_tokens
    message = {
        "id": f"msg_sim_{n}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    if data.get("stream"):
        return StreamingResponse(anthropic_events(message), media_type="text/event-stream")
    return JSONResponse(message)


def _cache_marked(data: dict[str, Any]) -> Any:
    """The prefix up to the last ``cache_control`` mark (system, then tools), or None."""
    raw_system, raw_tools = data.get("system"), data.get("tools")
    system: list[Any] = raw_system if isinstance(raw_system, list) else []
    tools: list[Any] = raw_tools if isinstance(raw_tools, list) else []
    marked: tuple[list[Any], list[Any]] | None = None
    for i, block in enumerate(system):
        if isinstance(block, dict) and block.get("cache_control"):
            marked = (system[: i + 1], [])
    for i, tool_def in enumerate(tools):
        if isinstance(tool_def, dict) and tool_def.get("cache_control"):
            marked = (system, tools[: i + 1])
    return marked


async def list_models(request: Request) -> Response:
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "owned_by": "stalwart-sim"} for name in MODELS
            ],
        }
    )


async def faults(request: Request) -> Response:
    world: SimWorld = request.app.state.world
    if request.method == "DELETE":
        world.clear_faults(request.query_params.get("target"))
        return JSONResponse({"faults": world.faults.snapshot()})
    data = await _read_json(request)
    if isinstance(data, Response):
        return data
    target = data.pop("target", None)
    if not isinstance(target, str) or not target:
        return _error(400, "'target' (a model name or tool:NAME) is required", "invalid_request")
    try:
        world.faults.set(target, Fault.from_json(data))
    except (ConfigError, TypeError) as exc:
        return _error(400, str(exc), "invalid_request")
    return JSONResponse({"faults": world.faults.snapshot()})


async def keys(request: Request) -> Response:
    world: SimWorld = request.app.state.world
    data = await _read_json(request)
    if isinstance(data, Response):
        return data
    model, values = data.get("model"), data.get("keys")
    if model not in MODELS or not (values is None or isinstance(values, list)):
        return _error(400, "expects {'model': name, 'keys': [key, ...] or null}", "invalid_request")
    world.set_keys(str(model), [str(v) for v in values] if values is not None else None)
    return JSONResponse({"model": model, "keys": len(values or [])})


async def stats(request: Request) -> Response:
    world: SimWorld = request.app.state.world
    return JSONResponse(
        {
            "stats": dict(world.stats),
            "keys_seen": dict(world.keys_seen),
            "faults": world.faults.snapshot(),
        }
    )


async def tool(request: Request) -> Response:
    world: SimWorld = request.app.state.world
    name = request.path_params["service"]
    fault = await _apply_fault(world, f"tool:{name}", request)
    if fault is not None:
        return fault
    key = request.headers.get("idempotency-key")
    if name == "orders":
        try:
            order_id = int(request.path_params.get("rest", ""))
        except ValueError:
            return _error(400, "order id must be an integer", "invalid_request")
        return JSONResponse(order_for(order_id))
    if name == "kb":
        return JSONResponse({"results": world.tools.search(request.query_params.get("q", ""))})
    data = await _read_json(request)
    if isinstance(data, Response):
        return data
    if name == "email":
        if not data.get("to"):
            return _error(400, "'to' is required", "invalid_request")
        return JSONResponse(world.tools.send_email(key, data))
    if name == "payments":
        if not isinstance(data.get("amount_cents"), int) or data["amount_cents"] <= 0:
            return _error(400, "'amount_cents' must be a positive integer", "invalid_request")
        replayed = world.tools.refunded(key)  # informational: the body is the same either way
        refund = world.tools.refund(key, data)
        return JSONResponse(refund, headers={"Idempotent-Replayed": "true"} if replayed else None)
    return _error(404, f"no simulated service {name!r}", "not_found")


async def tool_report(request: Request) -> Response:
    world: SimWorld = request.app.state.world
    return JSONResponse(world.tools.report())


def build_app(world: SimWorld) -> Starlette:
    from stalwart.llm.sim._responses import responses  # it builds on this module's helpers

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/messages", anthropic_messages, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/_sim/faults", faults, methods=["POST", "DELETE"]),
            Route("/_sim/keys", keys, methods=["POST"]),
            Route("/_sim/stats", stats, methods=["GET"]),
            Route("/tools/_report", tool_report, methods=["GET"]),
            Route("/tools/{service}/{rest:path}", tool, methods=["GET", "POST"]),
            Route("/tools/{service}", tool, methods=["GET", "POST"]),
        ]
    )
    app.state.world = world
    return app


class SimServer:
    """The sim on a loopback port, served from a background thread.

    ``with SimServer() as sim:`` starts it (port 0 picks a free port) and stops
    it on exit. ``sim.base_url`` is the OpenAI-style API root (``…/v1``),
    ``sim.url`` the server root; ``sim.world`` holds faults, keys and counters.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, scenario: Scenario | None = None
    ) -> None:
        self.world = SimWorld(scenario)
        self._config = uvicorn.Config(
            build_app(self.world),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
            access_log=False,
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout: float = 10.0) -> SimServer:
        self._thread = threading.Thread(target=self._server.run, name="stalwart-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise StartError(f"the sim did not start on {self.host}:{self.port}")
            time.sleep(0.005)
        sockets = self._server.servers[0].sockets
        self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
