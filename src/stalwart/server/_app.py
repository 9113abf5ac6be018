"""The node's HTTP API (Starlette): probes, /metrics, agents, logs, alerts, events, dashboard.

Rules every endpoint follows: inputs are validated and a bad one gets a 4xx
with ``{"error": "..."}`` saying what to fix; bodies are capped at
``max_body_bytes`` (413); mutating endpoints need ``Authorization: Bearer
<api_token>`` (compared in constant time; 401 without or with a wrong one, 403
when no token is configured); nothing here blocks the node's event loop (log
queries run in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stalwart.errors import NoProcess, StalwartError
from stalwart.observe import REGISTRY, AlertEvaluator, AlertNotice, Event, LogQuery, parse_since
from stalwart.observe import search as search_logs
from stalwart.server._notify import Dispatcher
from stalwart.server._openapi import openapi_spec
from stalwart.server._settings import ServerSettings
from stalwart.server._views import NodeLike, Summary, agents

__all__ = ["AppState", "build_app"]

_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_LEVELS = ("debug", "info", "warning", "error", "critical")
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AppState:
    """What the handlers share: the node, settings, log store path, alerts, shutdown flag."""

    def __init__(
        self,
        node: NodeLike,
        settings: ServerSettings,
        *,
        evaluator: AlertEvaluator | None = None,
        dispatcher: Dispatcher | None = None,
        log_db: str | None = None,
    ) -> None:
        self.node = node
        self.settings = settings
        self.evaluator = evaluator
        self.dispatcher = dispatcher
        self.log_db = log_db
        self.summary = Summary(node, evaluator)
        self.closing = asyncio.Event()


class _BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes gets 413 before a handler sees it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _send_json(send, 413, f"request body larger than {self.limit} bytes")
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # the app's HTTPException handler answers 413
                    raise HTTPException(413, f"request body larger than {self.limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking_send)
        except HTTPException as exc:  # raised outside the app's own exception handling
            if not started:
                await _send_json(send, exc.status_code, str(exc.detail))


async def _send_json(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _param(request: Request, name: str, *, max_len: int = 200) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise _BadRequest(400, f"query parameter {name!r} given {len(values)} times; give it once")
    if not values:
        return None
    value = values[0]
    if len(value) > max_len:
        raise _BadRequest(400, f"query parameter {name!r} is longer than {max_len} characters")
    return value


def _name(value: str | None, what: str) -> str | None:
    if value is not None and not _NAME.fullmatch(value):
        raise _BadRequest(400, f"{what} must match {_NAME.pattern}, got {value[:40]!r}")
    return value


def build_app(state: AppState) -> Starlette:
    """The Starlette application serving ``state``'s node (see the module docstring)."""
    settings = state.settings
    node = state.node

    def authorized(request: Request) -> JSONResponse | None:
        token = settings.api_token
        if token is None:
            return _error(403, "mutating endpoints are disabled: no API token is configured")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return _error(401, "missing bearer token", **{"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _error(401, "wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        return None

    async def livez(_request: Request) -> Response:
        return JSONResponse({"status": "ok", "node": node.id})

    async def readyz(_request: Request) -> Response:
        report = await node.readiness.run()
        return JSONResponse(report.as_dict(), status_code=200 if report.ready else 503)

    async def metrics(_request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def list_agents(_request: Request) -> Response:
        return JSONResponse({"node": node.id, "agents": await agents(node.runtime)})

    async def get_agent(request: Request) -> Response:
        name = _name(request.path_params["name"], "agent name")
        for row in await agents(node.runtime):
            if row["name"] == name:
                return JSONResponse(row)
        return _error(404, f"no agent named {name!r} in this node's tree")

    async def restart_agent(request: Request) -> Response:
        denied = authorized(request)
        if denied is not None:
            return denied
        name = _name(request.path_params["name"], "agent name")
        assert name is not None
        try:
            proc = node.runtime.process(name)
        except NoProcess:
            return _error(404, f"no running agent named {name!r}")
        node.runtime.host.kill(proc, "restart_requested")
        node.events.emit("agent_restart_requested", agent=name, pid=proc.pid)
        return JSONResponse({"agent": name, "pid": proc.pid, "status": "restarting"}, 202)

    async def logs(request: Request) -> Response:
        if state.log_db is None:
            return _error(404, "this node has no log store (server.log_db is None)")
        now = time.time()
        times: dict[str, float | None] = {}
        for key in ("since", "until"):
            raw = _param(request, key, max_len=64)
            try:
                times[key] = None if raw is None else parse_since(raw, now=now)
            except ValueError as exc:
                raise _BadRequest(400, f"{key}: {exc}") from None
        level = _param(request, "level", max_len=16)
        if level is not None and level.lower() not in _LEVELS:
            raise _BadRequest(400, f"level must be one of {', '.join(_LEVELS)}")
        raw_limit = _param(request, "limit", max_len=6) or "200"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 10000:
            raise _BadRequest(400, "limit must be an integer in 1..10000")
        grep = _param(request, "grep")
        q = LogQuery(
            agent_id=_name(_param(request, "agent"), "agent"),
            task_id=_name(_param(request, "task"), "task"),
            trace_id=_name(_param(request, "trace"), "trace"),
            event=_name(_param(request, "event"), "event"),
            level=level,
            since=times["since"],
            until=times["until"],
            grep=grep or None,
            limit=int(raw_limit),
        )
        try:
            rows = await asyncio.to_thread(search_logs, state.log_db, q)
        except Exception as exc:  # the store is down: say so, do not 500
            return _error(503, f"the log store cannot be searched now: {type(exc).__name__}")
        return JSONResponse({"count": len(rows), "lines": rows})

    async def alerts(_request: Request) -> Response:
        ev = state.evaluator
        if ev is None:
            return JSONResponse({"rules": [], "active": [], "recent": []})
        rules = [
            {
                "name": r.name,
                "kind": r.kind,
                "metric": r.metric,
                "warning": {"value": r.warning.value, "for_s": r.warning.for_s},
                "critical": {"value": r.critical.value, "for_s": r.critical.for_s},
                "summary": r.summary,
            }
            for r in ev.rules.values()
        ]
        recent = [n.as_dict() for n in ev.recent_notices()]
        return JSONResponse({"rules": rules, "active": ev.active(), "recent": recent})

    async def test_alert(request: Request) -> Response:
        denied = authorized(request)
        if denied is not None:
            return denied
        name = request.path_params["name"]
        ev = state.evaluator
        if ev is None or name not in ev.rules:
            return _error(404, f"no alert rule named {str(name)[:60]!r}")
        severity = _param(request, "severity", max_len=10) or "warning"
        if severity not in ("warning", "critical"):
            raise _BadRequest(400, "severity must be warning or critical")
        dispatcher = state.dispatcher
        if dispatcher is None or not dispatcher.notifiers:
            return _error(409, "no notifier is configured; nothing would receive the alert")
        results = await fire_test(dispatcher, ev, name, severity)
        return JSONResponse({"alert": name, "severity": severity, "results": results})

    async def summary(_request: Request) -> Response:
        return JSONResponse(await state.summary.build())

    async def cluster(_request: Request) -> Response:
        """The nodes sharing this node's store (just this one when it has no app)."""
        view = getattr(node, "cluster_view", None)
        if view is None:
            nodes = [{"id": node.id, "self": True, "alive": True, "info": {}}]
        else:
            try:
                async with asyncio.timeout(5):
                    nodes = await view()
            except (TimeoutError, StalwartError) as exc:
                return _error(503, f"the cluster view cannot be read now: {exc}")
        return JSONResponse({"node": node.id, "nodes": nodes, "agents": await agents(node.runtime)})

    async def events(request: Request) -> Response:
        raw = _param(request, "types", max_len=1000)
        wanted = None if not raw else {_name(t, "event type") for t in raw.split(",")}
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        loop = asyncio.get_running_loop()
        owner = threading.get_ident()

        def put(event: Event) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a slow client loses events, not us
                queue.put_nowait(event)

        def on_event(event: Event) -> None:
            if wanted is None or event.name in wanted:
                if threading.get_ident() == owner:
                    put(event)
                else:  # emitted from a worker thread: hand over to the loop
                    loop.call_soon_threadsafe(put, event)

        return StreamingResponse(
            _sse(state, queue, node.events.subscribe(on_event)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def openapi(_request: Request) -> Response:
        return JSONResponse(openapi_spec())

    async def dashboard(_request: Request) -> Response:
        data = json.dumps(await state.summary.build(), default=str).replace("</", "<\\/")
        initial = f'<script id="initial" type="application/json">{data}</script>'
        html = _asset("index.html").decode().replace("<!--INITIAL-->", initial, 1)
        return Response(html, media_type="text/html; charset=utf-8")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return _error(404, f"no static asset {str(name)[:40]!r}")
        return Response(_asset(name), media_type=_STATIC[name])

    async def bad_request(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _BadRequest)
        return _error(exc.status, str(exc))

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail))

    routes = [
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/agents", list_agents, methods=["GET"]),
        Route("/v1/agents/{name}", get_agent, methods=["GET"]),
        Route("/v1/agents/{name}/restart", restart_agent, methods=["POST"]),
        Route("/v1/logs", logs, methods=["GET"]),
        Route("/v1/alerts", alerts, methods=["GET"]),
        Route("/v1/alerts/{name}/test", test_alert, methods=["POST"]),
        Route("/v1/summary", summary, methods=["GET"]),
        Route("/v1/cluster", cluster, methods=["GET"]),
        Route("/v1/events", events, methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        _BadRequest: bad_request,
        HTTPException: http_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    return app


async def fire_test(
    dispatcher: Dispatcher, evaluator: AlertEvaluator, name: str, severity: str
) -> dict[str, str]:
    """Send a real firing then resolved notice of rule ``name`` to every notifier."""
    rule = evaluator.rules[name]
    threshold = rule.threshold("critical" if severity == "critical" else "warning")
    now = time.time()
    sev: Any = severity
    labels = {"alertname": name, "severity": severity, "test": "true"}
    firing = AlertNotice(
        name, sev, "firing", labels, threshold.value, threshold.value, f"TEST: {rule.summary}", now
    )
    results = await dispatcher.send_now(firing)
    resolved = AlertNotice(
        name,
        sev,
        "resolved",
        labels,
        0.0,
        threshold.value,
        f"TEST: {rule.summary}",
        now,
        time.time(),
    )
    await dispatcher.send_now(resolved)
    return results


def _asset(name: str) -> bytes:
    return resources.files("stalwart.server").joinpath("static", name).read_bytes()


async def _sse(state: AppState, queue: asyncio.Queue[Event], sub: Any) -> AsyncIterator[str]:
    """Events as they happen, plus a ``summary`` every second and after agent changes."""
    closing = state.closing
    try:
        yield "retry: 1000\n\n"
        yield _frame("summary", await state.summary.build())
        while not closing.is_set():
            try:
                async with asyncio.timeout(1.0):
                    event = await queue.get()
            except TimeoutError:
                yield _frame("summary", await state.summary.build())
                continue
            data = {"ts": event.ts, **event.fields}
            yield _frame(event.name, data)
            if event.name.startswith(("agent_", "supervisor_", "alert")):
                yield _frame("summary", await state.summary.build())
    finally:
        sub.close()


def _frame(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"
