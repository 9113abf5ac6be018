"""The OpenAPI 3.0 description of the node's HTTP API (served at ``/openapi.json``).

Written by hand so it says exactly what the handlers accept and answer; the
schemathesis test in ``tests/integration/server`` checks the two agree and that
no generated request gets a 5xx.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_spec"]

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.:\\-]{1,128}$"}
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


_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
_AUTH_ERRORS = {
    "401": _ERROR,
    "403": _ERROR,
    "404": _ERROR,
    "400": _ERROR,
    "413": _ERROR,
    "409": _ERROR,
}


def openapi_spec() -> dict[str, Any]:
    """The spec as a dict (a fresh copy each call)."""
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": _NAME,
        "example": "a",
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "stalwart node API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/livez": {"get": {"summary": "Liveness", "responses": {"200": _ok("alive")}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: every check, each under its deadline",
                    "responses": {"200": _ok("ready"), "503": _ok("not ready: failed checks")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus exposition",
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/v1/agents": {
                "get": {"summary": "Agents of the tree", "responses": {"200": _ok("agents")}}
            },
            "/v1/agents/{name}": {
                "get": {
                    "summary": "One agent",
                    "parameters": [name_param],
                    "responses": {"200": _ok("the agent"), "400": _ERROR, "404": _ERROR},
                }
            },
            "/v1/agents/{name}/restart": {
                "post": {
                    "summary": "Kill the agent's process; its supervisor restarts it",
                    "security": _AUTH,
                    "parameters": [name_param],
                    "responses": {"202": _ok("restarting"), **_AUTH_ERRORS},
                }
            },
            "/v1/logs": {
                "get": {
                    "summary": "Search the log store",
                    "parameters": [
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
                            "level",
                        ),
                        _query("since", {"type": "string"}, "10m, 2h, 1d or ISO-8601"),
                        _query("until", {"type": "string"}, "10m, 2h, 1d or ISO-8601"),
                        _query("grep", {"type": "string", "maxLength": 200}, "substring"),
                        _query(
                            "limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "rows"
                        ),
                    ],
                    "responses": {
                        "200": _ok("matching lines"),
                        "400": _ERROR,
                        "404": _ERROR,
                        "503": _ERROR,
                    },
                }
            },
            "/v1/alerts": {
                "get": {"summary": "Rules, active and recent alerts", "responses": {"200": _ok("")}}
            },
            "/v1/alerts/{name}/test": {
                "post": {
                    "summary": "Fire one test alert (then its resolution) at every notifier",
                    "security": _AUTH,
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": _NAME,
                            "example": "BudgetLimit",
                        },
                        _query(
                            "severity",
                            {"type": "string", "enum": ["warning", "critical"]},
                            "severity",
                        ),
                    ],
                    "responses": {"200": _ok("delivery results"), **_AUTH_ERRORS},
                }
            },
            "/v1/summary": {
                "get": {"summary": "The dashboard's numbers", "responses": {"200": _ok("")}}
            },
            "/v1/events": {
                "get": {
                    "summary": "Server-sent events: node events and a summary every second",
                    "parameters": [
                        _query("types", {"type": "string"}, "comma-separated event names")
                    ],
                    "responses": {
                        "200": {
                            "description": "an event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": _ERROR,
                    },
                }
            },
        },
    }
