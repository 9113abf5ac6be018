"""HTTP plumbing shared by the provider adapters: one POST, bounded, mapped to model errors."""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
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
from stalwart.llm._h1 import Truncated
from stalwart.llm._netbackend import Answer, AsyncioTransport, BodyTooLarge
from stalwart.resilience import classify_http_status, retry_after_from_headers

__all__ = [
    "ApiKey",
    "environment_proxy",
    "post_json",
    "read_bounded",
    "resolve_key",
    "send_request",
    "status_error",
]

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


_NOT_ENCODED = ("", "identity")


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, upper or lower case, less the hosts ``NO_PROXY`` lists), or None.

    Read here, not by httpx: a client given its own ``transport=`` ignores these
    variables (httpx reads them only for a transport it builds), so model calls behind
    a proxy went straight out and failed."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or _bypassed((parts.hostname or "").lower(), proxies.get("no", "")):
        return None
    return proxy


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` lists ``host``: ``*``, the host itself, or a domain it is in
    (``example.com`` and ``.example.com`` both cover ``api.example.com``); a port on an
    entry is ignored."""
    for listed in no_proxy.lower().split(","):
        name = listed.strip()
        if name.count(":") == 1:  # host:port (an IPv6 address has more colons)
            name = name.split(":", 1)[0]
        name = name.strip("[]").lstrip(".")
        if name == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False


async def send_request(
    client: httpx.AsyncClient,
    transport: httpx.AsyncBaseTransport | None,
    url: str,
    *,
    headers: Mapping[str, str],
    content: bytes,
    timeout: float,
) -> httpx.Response:
    """POST ``content`` and return the response with its body unread (close it)."""
    # The body arrives as the server sent it, read raw and bounded; asked for unencoded
    # (httpx's default Accept-Encoding would invite gzip, which a raw read would hand
    # to the JSON decoder as it came). A server that encodes anyway is decoded
    # (:func:`read_bounded`).
    sent = {**headers, "accept-encoding": "identity"}
    limits = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    if transport is None:
        request = client.build_request("POST", url, headers=sent, content=content, timeout=limits)
        return await client.send(request, stream=True)
    request = httpx.Request(
        "POST", url, headers=sent, content=content, extensions={"timeout": limits.as_dict()}
    )
    response = await transport.handle_async_request(request)
    response.request = request  # as the client's send sets it (errors name the request)
    return response


async def read_bounded(response: httpx.Response, *, model: str, max_bytes: int) -> bytes:
    """The response's body, at most ``max_bytes`` of it (decoded, when the server encoded
    it despite being asked not to), else :class:`BadModelResponse`."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BadModelResponse(
            f"{model}: response of {declared} bytes exceeds the {max_bytes}-byte limit",
            model=model,
        )
    encoded = response.headers.get("content-encoding", "").strip().lower() not in _NOT_ENCODED
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes() if encoded else response.aiter_raw():
            size += len(chunk)
            if size > max_bytes:  # decoded bytes: a compressed bomb stops here too
                raise BadModelResponse(
                    f"{model}: response exceeds the {max_bytes}-byte limit", model=model
                )
            chunks.append(chunk)
    except httpx.RemoteProtocolError as exc:  # the body ended before Content-Length said
        raise BadModelResponse(f"{model}: truncated response body ({exc})", model=model) from None
    except httpx.DecodingError as exc:
        raise BadModelResponse(f"{model}: undecodable response body ({exc})", model=model) from None
    return b"".join(chunks)


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    *,
    model: str,
    headers: Mapping[str, str],
    body: dict[str, Any],
    timeout: float,
    max_bytes: int,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """POST ``body`` as JSON and return the decoded JSON object of a 2xx answer.

    Everything else becomes a classified stalwart error naming the model:
    :class:`RateLimited` (429, with ``Retry-After``), :class:`ModelAuthError`
    (401/403), :class:`ContextLengthExceeded`, :class:`ContentFiltered`,
    :class:`ModelHTTPError` (any other status, classified by it), and
    :class:`BadModelResponse` (not JSON, truncated, wrong content type, larger
    than ``max_bytes``). Transport errors (refused, reset, timeout) propagate
    as httpx raises them; the resilience layer classifies those.

    ``transport``: the client's own transport, to send to directly (skipping the
    client's layers that a model call does not use: authentication flows, redirects,
    the cookie jar, event hooks); an :class:`AsyncioTransport` is given the request's
    bytes and gives back the answer's, without httpx's request and response objects
    (``bench/http_client.py``). None sends through ``client``.
    """
    content = msgspec.json.encode(body)
    if isinstance(transport, AsyncioTransport):
        sent = {**headers, "accept-encoding": "identity"}
        try:
            answer = await transport.post(
                url, sent, content, timeout=timeout, connect=min(timeout, 10.0),
                max_bytes=max_bytes,
            )  # fmt: skip
        except BodyTooLarge as exc:
            raise _too_large(model, max_bytes, exc.declared) from None
        except Truncated as exc:
            raise BadModelResponse(
                f"{model}: truncated response body ({exc})", model=model
            ) from None
        status, raw = answer.status, answer.body
        answered: Mapping[str, str] = answer.headers
        encoding = answered.get("content-encoding", "").strip().lower()
        if encoding not in _NOT_ENCODED:
            raw = _decoded(answer, model=model, max_bytes=max_bytes)
    else:
        response = await send_request(
            client, transport, url, headers=headers, content=content, timeout=timeout
        )
        try:
            raw = await read_bounded(response, model=model, max_bytes=max_bytes)
        finally:
            await response.aclose()
        status, answered = response.status_code, response.headers
    if 200 <= status < 300:
        content_type = answered.get("content-type", "")
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
    raise status_error(model, status, answered, raw)


def _too_large(model: str, max_bytes: int, declared: int | None) -> BadModelResponse:
    if declared is not None:
        return BadModelResponse(
            f"{model}: response of {declared} bytes exceeds the {max_bytes}-byte limit",
            model=model,
        )
    return BadModelResponse(f"{model}: response exceeds the {max_bytes}-byte limit", model=model)


class _Slices(httpx.SyncByteStream):
    """An encoded body in slices, so that each decoded piece stays small."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def __iter__(self) -> Iterator[bytes]:
        raw = self._raw
        for start in range(0, len(raw), 16384):
            yield raw[start : start + 16384]


def _decoded(answer: Answer, *, model: str, max_bytes: int) -> bytes:
    """An encoded body (the server encoded it despite being asked not to), decoded by
    httpx's decoders (gzip, deflate; br and zstd when installed), bounded after
    decoding: a compressed bomb stops at ``max_bytes``."""
    response = httpx.Response(
        answer.status, headers=answer.raw_headers, stream=_Slices(answer.body)
    )
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(model, max_bytes, None)
            chunks.append(chunk)
    except httpx.DecodingError as exc:
        raise BadModelResponse(f"{model}: undecodable response body ({exc})", model=model) from None
    return b"".join(chunks)


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
