"""The OpenAPI 3.0 description of the node's HTTP API (served at ``/openapi.json``).

Written by hand so it says exactly what the handlers accept and answer; the
schemathesis test in ``tests/integration/server`` checks the two agree and that
no generated request gets a 5xx (the only 503s are documented: a store or a
token secret that cannot be reached).
"""

from __future__ import annotations

from typing import Any

from stalwart.durable import TASK_STATUSES
from stalwart.server._children_api import children_paths

__all__ = ["openapi_spec"]

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$"}
_TASK_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "pattern": "^[^\\x00-\\x1f\\x7f/]+$",
}
_ERROR = {
    "description": "What was wrong with the request",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_OBJ = {"content": {"application/json": {"schema": {"type": "object"}}}}
_PUBLIC: list[dict[str, list[str]]] = []
# every path but the public ones: a wrong or missing token (401), the client over its rate
# limit (429), the token's secret reference unresolvable (503)
_GUARDED = {"401": _ERROR, "429": _ERROR, "503": _ERROR}


def _ok(description: str) -> dict[str, Any]:
    return {"description": description, **_OBJ}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: dict[str, Any], example: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "example": example}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An operation needing the token: the shared 401/429/503 answers added."""
    return {"summary": summary, **extra, "responses": {**_GUARDED, **responses}}


def _json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_MUTATION_ERRORS = {"400": _ERROR, "403": _ERROR, "404": _ERROR, "409": _ERROR, "413": _ERROR}
_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}
_TASK_STATUS = {
    "type": "string",
    "enum": list(TASK_STATUSES),
}


def _tasks() -> dict[str, Any]:
    task_id = _path("id", _TASK_ID, "t-1")
    store = {"404": _ERROR, "400": _ERROR, "503": _ERROR}
    return {
        "/v1/tasks": {
            "post": _op(
                "Submit a task to one of the app's agents (durable once answered)",
                {"202": _ok("accepted: id, agent, status"), **_MUTATION_ERRORS},
                requestBody=_json_body(
                    {
                        "type": "object",
                        "required": ["agent", "input"],
                        "additionalProperties": False,
                        "properties": {
                            "agent": _NAME,
                            "input": {"description": "the task's input: any JSON value"},
                            "task_id": _NAME,
                            "seed": {"type": "integer", "minimum": 0, "maximum": 2**62 - 1},
                            "principal": {
                                "description": "who the task is for: an id, or "
                                '{"id", "kind"?, "attrs"?}; the agent\'s rules see it '
                                "(docs/security.md)",
                                "oneOf": [
                                    {"type": "string", "minLength": 1, "maxLength": 512},
                                    {
                                        "type": "object",
                                        "required": ["id"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "id": {"type": "string"},
                                            "kind": {"type": "string"},
                                            "attrs": {"type": "object"},
                                        },
                                    },
                                ],
                            },
                        },
                        "example": {"agent": "a", "input": {"text": "Where is order #4521?"}},
                    }
                ),
            ),
            "get": _op(
                "Recent tasks, newest first",
                {"200": _ok("count and tasks"), **store},
                parameters=[
                    _query("agent", _NAME, "only this agent's"),
                    _query("status", _TASK_STATUS, "only tasks with this status"),
                    _query("limit", _LIMIT, "at most this many (50)"),
                ],
            ),
        },
        "/v1/tasks/{id}": {
            "get": _op(
                "One task: status, attempts, timings, input and outcome (redacted)",
                {"200": _ok("the task"), **store},
                parameters=[task_id],
            )
        },
        "/v1/tasks/{id}/journal": {
            "get": _op(
                "The task's journaled steps: position, kind, name, status, timings, value "
                "(redacted)",
                {"200": _ok("the steps"), **store},
                parameters=[
                    task_id,
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "steps"),
                ],
            )
        },
        "/v1/tasks/{id}/events": {
            "get": _op(
                "Server-sent events: the task's model text as it is generated (agents with "
                "stream=True), `delta` events with ids SEQ:END, then `end` with the status; "
                "send Last-Event-ID (or ?after=SEQ:END) to continue after an event",
                {
                    "200": {
                        "description": "an event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **store,
                },
                parameters=[
                    task_id,
                    _query("after", {"type": "string", "maxLength": 40}, "an event id: SEQ:END"),
                ],
            )
        },
        "/v1/tasks/{id}/retry": {
            "post": _op(
                "Run a failed or quarantined task again: back to pending, attempts from 0 "
                "(409 for a task in any other status)",
                {"202": _ok("the task is pending again"), "409": _ERROR, **store},
                parameters=[task_id],
            )
        },
        "/v1/tasks/{id}/cancel": {
            "post": _op(
                "Cancel a pending, running or awaiting_approval task: it ends cancelled, the "
                "step in flight is interrupted, no further side effect starts",
                {"200": _ok("the cancelled task"), **_MUTATION_ERRORS, "503": _ERROR},
                parameters=[task_id],
                requestBody=_json_body(
                    {
                        "type": "object",
                        "properties": {
                            "by": {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f]{1,128}$"}
                        },
                        "additionalProperties": False,
                    },
                    required=False,
                ),
            )
        },
    }


def _approvals() -> dict[str, Any]:
    approval_id = _path("id", _NAME, "0123456789abcdef")
    decide_body = _json_body(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "by": {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f]{1,128}$"},
            },
        },
        required=False,
    )
    errors = {**_MUTATION_ERRORS, "503": _ERROR}
    return {
        "/v1/approvals": {
            "get": _op(
                "Tool calls held for a person's approval (arguments redacted unless reveal=1)",
                {"200": _ok("count and approvals"), "400": _ERROR, "404": _ERROR},
                parameters=[
                    _query(
                        "status",
                        {"type": "string", "enum": ["pending", "approved", "denied"]},
                        "only these",
                    ),
                    _query(
                        "reveal",
                        {"type": "string", "enum": ["0", "1", "false", "true"]},
                        "1: show the arguments unredacted",
                    ),
                    _query("limit", _LIMIT, "at most this many (100)"),
                ],
            )
        },
        "/v1/approvals/{id}/approve": {
            "post": _op(
                "Approve a held call: the task runs it when it proposes it again",
                {"200": _ok("the decided approval"), **errors},
                parameters=[approval_id],
                requestBody=decide_body,
            )
        },
        "/v1/approvals/{id}/deny": {
            "post": _op(
                "Deny a held call",
                {"200": _ok("the decided approval"), **errors},
                parameters=[approval_id],
                requestBody=decide_body,
            )
        },
    }


def _breakers() -> dict[str, Any]:
    breaker = _path("name", _NAME, "openai:gpt-4o")
    states = ["forced_open", "disabled", "metrics_only", "closed", "open", "half_open"]
    body = _json_body(
        {
            "type": "object",
            "required": ["state"],
            "properties": {"state": {"type": "string", "enum": states}},
        }
    )
    return {
        "/v1/breakers": {
            "get": _op(
                "Circuit breakers of this node and its agent processes", {"200": _ok("breakers")}
            )
        },
        "/v1/breakers/{name}": {
            "get": _op(
                "One circuit breaker: state and operator override",
                {"200": _ok("the breaker"), "400": _ERROR, "404": _ERROR},
                parameters=[breaker],
            )
        },
        "/v1/breakers/{name}/state": {
            "post": _op(
                "Order a breaker into a state (forced_open, disabled and metrics_only stick "
                "until closed); reaches every agent process within a heartbeat",
                {"202": _ok("the order"), **_MUTATION_ERRORS, "503": _ERROR},
                parameters=[breaker],
                requestBody=body,
            )
        },
    }


def openapi_spec() -> dict[str, Any]:
    """The spec as a dict (a fresh copy each call)."""
    name_param = _path("name", _NAME, "a")
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "stalwart node API",
            "version": "1",
            "description": (
                "Every path but /livez, /readyz and /metrics (the default server.public_paths) "
                "needs Authorization: Bearer <server.api_token>; GET requests also accept the "
                "session cookie POST /login sets for the dashboard. Each client address is "
                "rate limited (429 with Retry-After); /livez and /readyz never are."
            ),
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/livez": {
                "get": {
                    "summary": "Liveness",
                    "security": _PUBLIC,
                    "responses": {"200": _ok("alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: every check, each under its deadline",
                    "security": _PUBLIC,
                    "responses": {"200": _ok("ready"), "503": _ok("not ready: failed checks")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus exposition",
                    "security": _PUBLIC,
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "429": _ERROR,
                    },
                }
            },
            "/login": {
                "post": {
                    "summary": "Log the dashboard in: a session cookie for GET requests",
                    "security": _PUBLIC,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "required": ["token"],
                                    "properties": {"token": {"type": "string", "minLength": 1}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "303": {"description": "logged in: the cookie is set, go to /"},
                        "400": _ERROR,
                        "401": {
                            "description": "wrong token: the form again",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        },
                        "403": _ERROR,
                        "413": _ERROR,
                        "429": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/v1/agents": {"get": _op("Agents of the tree", {"200": _ok("agents")})},
            "/v1/agents/{name}": {
                "get": _op(
                    "One agent",
                    {"200": _ok("the agent"), "400": _ERROR, "404": _ERROR},
                    parameters=[name_param],
                )
            },
            "/v1/agents/{name}/restart": {
                "post": _op(
                    "Kill the agent's process; its supervisor restarts it",
                    {"202": _ok("restarting"), **_MUTATION_ERRORS},
                    parameters=[name_param],
                )
            },
            **_tasks(),
            **_approvals(),
            **_breakers(),
            **children_paths(_NAME, _ERROR, _GUARDED),
            "/v1/logs": {
                "get": _op(
                    "Search the log store",
                    {
                        "200": _ok("matching lines"),
                        "400": _ERROR,
                        "404": _ERROR,
                        "503": _ERROR,
                    },
                    parameters=[
                        _query("agent", _NAME, "agent id"),
                        _query("task", _NAME, "task id"),
                        _query("trace", _NAME, "trace id"),
                        _query("event", _NAME, "event name"),
                        _query(
                            "level",
                            {
                                "type": "string",
                                "enum": ["debug", "info", "warning", "error", "critical"],
                            },
                            "lines at this level and above",
                        ),
                        _query("since", {"type": "string"}, "10m, 2h, 1d or ISO-8601"),
                        _query("until", {"type": "string"}, "10m, 2h, 1d or ISO-8601"),
                        _query("grep", {"type": "string", "maxLength": 200}, "substring"),
                        _query(
                            "limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "rows"
                        ),
                    ],
                )
            },
            "/v1/alerts": {"get": _op("Rules, active and recent alerts", {"200": _ok("")})},
            "/v1/alerts/{name}/test": {
                "post": _op(
                    "Fire one test alert (then its resolution) at every notifier",
                    {"200": _ok("delivery results"), **_MUTATION_ERRORS},
                    parameters=[
                        _path("name", _NAME, "BudgetLimit"),
                        _query(
                            "severity",
                            {"type": "string", "enum": ["warning", "critical"]},
                            "severity",
                        ),
                    ],
                )
            },
            "/v1/summary": {"get": _op("The dashboard's numbers", {"200": _ok("")})},
            "/v1/cluster": {
                "get": _op("The nodes sharing this node's store", {"200": _ok("nodes")})
            },
            "/v1/events": {
                "get": _op(
                    "Server-sent events: node events and a summary every second",
                    {
                        "200": {
                            "description": "an event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": _ERROR,
                    },
                    parameters=[_query("types", {"type": "string"}, "comma-separated event names")],
                )
            },
        },
    }
