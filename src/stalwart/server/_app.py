"""The node's HTTP API (Starlette): probes, /metrics, agents, tasks, approvals, logs,
alerts, events, the dashboard.

Rules every endpoint follows:

- **Token on every path but the public ones.** With ``api_token`` configured (a
  literal or ``secret://name``, resolved at each request so a rotation needs no
  restart), every path outside ``public_paths`` (``/livez``, ``/readyz``,
  ``/metrics``) needs ``Authorization: Bearer <token>`` -- reads included -- or,
  for GET only, the session cookie ``POST /login`` sets for the dashboard; 401
  with ``WWW-Authenticate: Bearer`` otherwise, 503 naming the secret when it
  cannot be resolved. Without a token (allowed on a loopback host only) reads
  are open and mutations answer 403. See :mod:`stalwart.server._auth`.
- **A rate limit per client address** (``rate_limit_per_s``, bursts of
  ``rate_limit_burst``): 429 with ``Retry-After``; probes are never limited.
- Inputs are validated and a bad one gets a 4xx with ``{"error": "..."}`` saying
  what to fix; bodies are capped at ``max_body_bytes`` (413); what the task,
  journal and approval views return passes the guard's redactor.
- Nothing here blocks the node's event loop (store and log queries run in threads
  or on the store's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import NoProcess, StalwartError
from stalwart.guard import SecretResolver
from stalwart.observe import (
    LEVELS,
    REGISTRY,
    AlertEvaluator,
    AlertNotice,
    Event,
    LogQuery,
    parse_since,
)
from stalwart.server._auth import CREDENTIAL, ApiToken, AuthGate
from stalwart.server._breakers_api import BreakerApi
from stalwart.server._children_api import children_routes
from stalwart.server._http import BadRequest, error, param, send_json
from stalwart.server._http import name as _name
from stalwart.server._logstore import search_logs
from stalwart.server._notify import Dispatcher
from stalwart.server._openapi import openapi_spec
from stalwart.server._ratelimit import ClientRateLimiter, RateLimitGate
from stalwart.server._settings import ServerSettings
from stalwart.server._tasks_api import TaskApi
from stalwart.server._views import NodeLike, Summary, agents

__all__ = ["AppState", "build_app"]

_LEVELS = LEVELS
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}


class AppState:
    """What the handlers share: the node, settings, log store path, alerts, shutdown flag,
    the API token, the per-client rate limiter and the task API.

    ``secrets`` resolves a ``secret://`` API token (default: the provider the
    ``STALWART_SECRETS`` variables name); ``clock`` drives the rate limiter.
    """

    def __init__(
        self,
        node: NodeLike,
        settings: ServerSettings,
        *,
        evaluator: AlertEvaluator | None = None,
        dispatcher: Dispatcher | None = None,
        log_db: str | None = None,
        secrets: SecretResolver | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.node = node
        self.settings = settings
        self.evaluator = evaluator
        self.dispatcher = dispatcher
        self.log_db = log_db
        self.summary = Summary(node, evaluator)
        self.closing = asyncio.Event()
        self.token = ApiToken(settings.api_token, secrets)
        self.limiter = ClientRateLimiter(
            settings.rate_limit_per_s, settings.rate_limit_burst, clock=clock
        )
        self.task_api = TaskApi(node, closing=self.closing)

    async def close(self) -> None:
        """Release what the handlers opened (the approval queue's connection)."""
        await self.task_api.close()


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
            await send_json(send, 413, f"request body larger than {self.limit} bytes")
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
                await send_json(send, exc.status_code, str(exc.detail))


def build_app(state: AppState) -> Starlette:
    """The Starlette application serving ``state``'s node (see the module docstring)."""
    settings = state.settings
    node = state.node

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
        return error(404, f"no agent named {name!r} in this node's tree")

    async def restart_agent(request: Request) -> Response:
        name = _name(request.path_params["name"], "agent name")
        assert name is not None
        try:
            proc = node.runtime.process(name)
        except NoProcess:
            return error(404, f"no running agent named {name!r}")
        node.runtime.host.kill(proc, "restart_requested")
        node.events.emit("agent_restart_requested", agent=name, pid=proc.pid)
        return JSONResponse({"agent": name, "pid": proc.pid, "status": "restarting"}, 202)

    async def logs(request: Request) -> Response:
        if state.log_db is None:
            return error(404, "this node has no log store (server.log_db is None)")
        now = time.time()
        times: dict[str, float | None] = {}
        for key in ("since", "until"):
            raw = param(request, key, max_len=64)
            try:
                times[key] = None if raw is None else parse_since(raw, now=now)
            except ValueError as exc:
                raise BadRequest(400, f"{key}: {exc}") from None
        level = param(request, "level", max_len=16)
        if level is not None and level.lower() not in _LEVELS:
            raise BadRequest(400, f"level must be one of {', '.join(_LEVELS)}")
        raw_limit = param(request, "limit", max_len=6) or "200"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 10000:
            raise BadRequest(400, "limit must be an integer in 1..10000")
        grep = param(request, "grep")
        q = LogQuery(
            agent_id=_name(param(request, "agent"), "agent"),
            task_id=_name(param(request, "task"), "task"),
            trace_id=_name(param(request, "trace"), "trace"),
            event=_name(param(request, "event"), "event"),
            level=level,
            since=times["since"],
            until=times["until"],
            grep=grep or None,
            limit=int(raw_limit),
        )
        try:
            rows = await asyncio.to_thread(search_logs, state.log_db, q)
        except Exception as exc:  # the store is down: say so, do not 500
            return error(503, f"the log store cannot be searched now: {type(exc).__name__}")
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
        name = request.path_params["name"]
        ev = state.evaluator
        if ev is None or name not in ev.rules:
            return error(404, f"no alert rule named {str(name)[:60]!r}")
        severity = param(request, "severity", max_len=10) or "warning"
        if severity not in ("warning", "critical"):
            raise BadRequest(400, "severity must be warning or critical")
        dispatcher = state.dispatcher
        if dispatcher is None or not dispatcher.notifiers:
            return error(409, "no notifier is configured; nothing would receive the alert")
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
                return error(503, f"the cluster view cannot be read now: {exc}")
        return JSONResponse({"node": node.id, "nodes": nodes, "agents": await agents(node.runtime)})

    async def events(request: Request) -> Response:
        raw = param(request, "types", max_len=1000)
        wanted = None if not raw else {_name(t, "event type") for t in raw.split(",")}
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        loop = asyncio.get_running_loop()
        owner = threading.get_ident()

        def put(event: Event) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a slow client loses events, not us
                queue.put_nowait(event)

        def on_event(event: Event) -> None:
            # streamed text (task.delta) only when asked for by name: it is the per-task
            # stream's (/v1/tasks/{id}/events), and would flood a node-wide listener
            if (wanted is None and event.name != "task.delta") or (
                wanted is not None and event.name in wanted
            ):
                if threading.get_ident() == owner:
                    put(event)
                else:  # emitted from a worker thread: hand over to the loop
                    loop.call_soon_threadsafe(put, event)

        credential = request.scope.get(CREDENTIAL)
        return StreamingResponse(
            _sse(state, queue, node.events.subscribe(on_event), credential),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def openapi(_request: Request) -> Response:
        return JSONResponse(openapi_spec())

    async def dashboard(_request: Request) -> Response:
        data = json.dumps(await state.summary.build(), default=str).replace("</", "<\\/")
        initial = f'<script id="initial" type="application/json">{data}</script>'
        html = _asset("index.html").decode().replace("<!--INITIAL-->", initial, 1)
        return Response(
            html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
        )

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return error(404, f"no static asset {str(name)[:40]!r}")
        return Response(_asset(name), media_type=_STATIC[name])

    async def bad_request(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BadRequest)
        return error(exc.status, str(exc), **exc.headers)

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, str(exc.detail))

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
        *state.task_api.routes(),
        *BreakerApi(node.events).routes(),
        *children_routes(node),
        Route("/", dashboard, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        BadRequest: bad_request,
        HTTPException: http_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    # outermost last: the rate limit, then the body cap, then the token, then the routes
    app.add_middleware(AuthGate, token=state.token, public_paths=settings.public_paths)
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RateLimitGate, limiter=state.limiter)
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


async def _sse(
    state: AppState, queue: asyncio.Queue[Event], sub: Any, credential: tuple[str, str] | None
) -> AsyncIterator[str]:
    """Events as they happen, plus a ``summary`` every second and after agent changes.

    Each second the credential the stream was opened with is checked again: once the
    token changed (rotated), the stream says ``logout`` and ends, as a new request would
    be refused."""
    closing = state.closing
    loop = asyncio.get_running_loop()
    check_at = loop.time() + 1.0
    try:
        yield "retry: 1000\n\n"
        yield _frame("summary", await state.summary.build())
        while not closing.is_set():
            if loop.time() >= check_at:
                check_at = loop.time() + 1.0
                if not await state.token.still_valid(credential):
                    yield _frame("logout", {"reason": "the API token changed: log in again"})
                    return
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
