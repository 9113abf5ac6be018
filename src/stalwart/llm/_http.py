"""HTTP plumbing shared by the provider adapters: one POST, bounded, mapped to model errors."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import msgspec

from stalwart.errors import (
    BadModelResponse,
    ContentFiltered,
    ContextLengthExceeded,
    ModelAuthError,
    ModelCannotServe,
    ModelHTTPError,
    RateLimited,
)
from stalwart.resilience import classify_http_status, retry_after_from_headers

__all__ = ["ApiKey", "post_json", "resolve_key", "status_error"]

ApiKey = str | Callable[[], str] | Callable[[], Awaitable[str]] | None
"""A key, or a function returning the current key (called per request, so a rotated
key is used from the next request on)."""

_CONTEXT_MARKERS = (
    "context_length",
    "context length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
)
_CONTENT_MARKERS = ("content_filter", "content_policy", "content policy", "safety system")
# A 400 naming a parameter or value this model does not take (OpenAI's codes
# ``unsupported_parameter`` / ``unsupported_value``, and the phrasings providers and
# OpenAI-compatible servers use for them): the model cannot serve this request, another
# may. Any other 400 is the request's own fault.
_UNSUPPORTED_CODES = ("unsupported_parameter", "unsupported_value")
_UNSUPPORTED_MARKERS = (
    "unsupported parameter",
    "unsupported value",
    "not supported with this model",
    "is not supported by this model",
    "does not support",
)


async def resolve_key(key: ApiKey) -> str | None:
    if key is None or isinstance(key, str):
        return key
    value = key()
    if isinstance(value, str):
        return value
    return await value


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    model: str,
    headers: Mapping[str, str],
    body: dict[str, Any],
    timeout: float,
    max_bytes: int,
) -> dict[str, Any]:
    """POST ``body`` as JSON and return the decoded JSON object of a 2xx answer.

    Everything else becomes a classified stalwart error naming the model:
    :class:`RateLimited` (429, with ``Retry-After``), :class:`ModelAuthError`
    (401/403), :class:`ContextLengthExceeded`, :class:`ContentFiltered`,
    :class:`ModelHTTPError` (any other status, classified by it), and
    :class:`BadModelResponse` (not JSON, truncated, wrong content type, larger
    than ``max_bytes``). Transport errors (refused, reset, timeout) propagate
    as httpx raises them; the resilience layer classifies those.
    """
    request = client.build_request(
        "POST",
        url,
        headers=dict(headers),
        content=msgspec.json.encode(body),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
    )
    response = await client.send(request, stream=True)
    try:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise BadModelResponse(
                f"{model}: response of {declared} bytes exceeds the {max_bytes}-byte limit",
                model=model,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > max_bytes:
                raise BadModelResponse(
                    f"{model}: response exceeds the {max_bytes}-byte limit", model=model
                )
            chunks.append(chunk)
    except httpx.RemoteProtocolError as exc:  # the body ended before Content-Length said
        raise BadModelResponse(f"{model}: truncated response body ({exc})", model=model) from None
    finally:
        await response.aclose()
    raw = b"".join(chunks)
    status = response.status_code
    if 200 <= status < 300:
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type:
            raise BadModelResponse(
                f"{model}: expected a JSON response, got content-type {content_type!r} "
                f"({raw[:80]!r})",
                model=model,
            )
        try:
            data = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise BadModelResponse(
                f"{model}: response is not valid JSON ({exc}): {raw[:120]!r}", model=model
            ) from None
        if not isinstance(data, dict):
            raise BadModelResponse(
                f"{model}: expected a JSON object, got {type(data).__name__}", model=model
            )
        return data
    raise status_error(model, status, response.headers, raw)


def status_error(model: str, status: int, headers: Mapping[str, str], raw: bytes) -> Exception:
    text = raw[:2000].decode("utf-8", "replace")
    lowered = text.lower()
    detail = _error_message(raw) or text[:300]
    if status == 429:
        retry_after = retry_after_from_headers(headers, now=time.time())  # retry-after-ms first
        return RateLimited(
            f"{model}: rate limited (429): {detail}", dependency=model, retry_after=retry_after
        )
    if status in (401, 403):
        return ModelAuthError(
            f"{model}: {status} — check the API key or its access: {detail}", model=model
        )
    if 400 <= status < 500 and any(m in lowered for m in _CONTEXT_MARKERS):
        return ContextLengthExceeded(
            f"{model}: prompt too long for this model: {detail}", model=model
        )
    if 400 <= status < 500 and any(m in lowered for m in _CONTENT_MARKERS):
        return ContentFiltered(f"{model}: refused by the content policy: {detail}", model=model)
    if status in (400, 422) and _unsupported(raw, lowered):
        return ModelCannotServe(
            f"{model}: this model cannot serve this request: {detail} (if stalwart's "
            "capability table is wrong for it, give Provider(capabilities=Capabilities(...)))",
            model=model,
            param=_error_field(raw, "param"),
        )
    cls = classify_http_status(status, headers)
    return ModelHTTPError(
        f"{model}: HTTP {status}: {detail}",
        model=model,
        status_code=status,
        retryable=cls.retryability,
        scope=cls.scope,
    )


def _unsupported(raw: bytes, lowered: str) -> bool:
    code = _error_field(raw, "code")
    return code in _UNSUPPORTED_CODES or any(m in lowered for m in _UNSUPPORTED_MARKERS)


def _error_field(raw: bytes, field: str) -> str | None:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    err = data.get("error") if isinstance(data, dict) else None
    value = err.get(field) if isinstance(err, dict) else None
    return value if isinstance(value, str) else None


def _error_message(raw: bytes) -> str | None:
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return None
