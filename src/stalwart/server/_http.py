"""What every handler and middleware of the HTTP API shares: JSON errors, query
parameters, names, reading a bounded JSON body, redaction of what goes out."""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Send

from stalwart.guard import output_redactor

__all__ = [
    "NAME",
    "BadRequest",
    "error",
    "int_param",
    "json_body",
    "name",
    "param",
    "redacted",
    "redacted_off_loop",
    "retry_after_header",
    "send_json",
]

NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


class BadRequest(Exception):
    """Raised by a handler: the app answers ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def error(status: int, message: str, **headers: str) -> JSONResponse:
    """``{"error": message}`` with ``status`` (and ``headers``)."""
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


async def send_json(
    send: Send, status: int, error: str, headers: dict[str, str] | None = None
) -> None:
    """Answer ``{"error": ...}`` straight from an ASGI middleware (before any handler)."""
    body = json.dumps({"error": error}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def retry_after_header(seconds: float | None) -> str:
    """``Retry-After`` as HTTP wants it: whole seconds, at least 1."""
    if seconds is None or not math.isfinite(seconds):
        return "1"
    return str(max(1, math.ceil(seconds)))


def param(request: Request, key: str, *, max_len: int = 200) -> str | None:
    """The query parameter ``key`` given at most once, or None."""
    values = request.query_params.getlist(key)
    if len(values) > 1:
        raise BadRequest(400, f"query parameter {key!r} given {len(values)} times; give it once")
    if not values:
        return None
    value = values[0]
    if len(value) > max_len:
        raise BadRequest(400, f"query parameter {key!r} is longer than {max_len} characters")
    return value


def name(value: str | None, what: str) -> str | None:
    """``value`` if it is a valid name (agent, task, event...), else 400."""
    if value is not None and not NAME.fullmatch(value):
        raise BadRequest(400, f"{what} must match {NAME.pattern}, got {value[:40]!r}")
    return value


def int_param(request: Request, key: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ``low..high`` (``default`` when absent)."""
    raw = param(request, key, max_len=12)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(400, f"{key} must be an integer in {low}..{high}, got {raw[:12]!r}")
    return int(raw)


async def json_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (``{}`` for an empty one when ``optional``)."""
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise BadRequest(400, "the request body is empty: send a JSON object")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(400, "the request body is nested too deeply: flatten it") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise BadRequest(400, f"the request body has a value out of range: {exc}") from None
    try:  # a lone surrogate (\ud800) parses, but is no text: refuse it here, not at the store
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            400, "the request body has a lone surrogate (\\uD800-\\uDFFF) in a string: "
            "send valid Unicode text"
        ) from None  # fmt: skip
    except RecursionError:
        raise BadRequest(400, "the request body is nested too deeply: flatten it") from None
    if not isinstance(data, dict):
        raise BadRequest(400, f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def redacted(data: Any) -> Any:
    """``data`` through the guard's output redactor (PII, names and places, credentials,
    known secrets; the accurate tier when its model is installed): what the task, approval
    and journal views answer with, whatever the store holds. It may load the model and
    read text with it: call it off the event loop (:func:`redacted_off_loop`)."""
    return output_redactor().redact_data(data, policy="redact")


async def redacted_off_loop(data: Any) -> Any:
    """:func:`redacted` in a worker thread. The first call in a process loads the output
    tier's model (1-2 s of CPU; concurrent first calls wait for the one load), and the model
    reads a 4 KB text in about 0.1 s: neither may stall the loop's other requests and
    heartbeats."""
    return await asyncio.to_thread(redacted, data)
