"""Server-sent events from a model API: open the stream (mapped errors), then read events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
import msgspec

from stalwart.errors import BadModelResponse
from stalwart.llm._http import send_request, status_error

__all__ = ["SSEvent", "iter_events", "open_stream"]


class SSEvent(msgspec.Struct, frozen=True):
    """One event: its ``event:`` name (empty when the server sent none) and its JSON data."""

    event: str
    data: dict[str, Any]


async def open_stream(
    client: httpx.AsyncClient,
    url: str,
    *,
    model: str,
    headers: Mapping[str, str],
    body: dict[str, Any],
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.Response:
    """POST ``body`` and return the open response once the server said 2xx with an event
    stream; any other answer becomes the same classified error as a plain call's.
    ``transport``: as :func:`~stalwart.llm._http.post_json`'s."""
    response = await send_request(
        client,
        transport,
        url,
        headers={**headers, "accept": "text/event-stream"},
        content=msgspec.json.encode(body),
        timeout=timeout,
    )
    if 200 <= response.status_code < 300:
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" in content_type:
            return response
        await response.aclose()
        raise BadModelResponse(
            f"{model}: asked for a stream, got content-type {content_type!r}", model=model
        )
    try:
        raw = await response.aread()
    finally:
        await response.aclose()
    raise status_error(model, response.status_code, response.headers, raw[:64_000])


async def iter_events(
    response: httpx.Response, *, model: str, max_bytes: int
) -> AsyncGenerator[SSEvent, None]:
    """The events of an open stream, until ``data: [DONE]`` or the end of the body.

    A data line that is not a JSON object, or a stream over ``max_bytes`` in all,
    is a :class:`BadModelResponse`; the response is closed in every case.
    """
    size = 0
    event = ""
    data: list[str] = []
    try:
        async for line in response.aiter_lines():
            size += len(line) + 1
            if size > max_bytes:
                raise BadModelResponse(
                    f"{model}: stream exceeds the {max_bytes}-byte limit", model=model
                )
            if not line:
                if data:
                    text = "\n".join(data)
                    if text.strip() == "[DONE]":
                        return
                    yield SSEvent(event, _decode(text, model))
                event, data = "", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
            # ``id:``, ``retry:`` and ``:`` comments carry nothing a model stream needs
        if data and "\n".join(data).strip() != "[DONE]":
            yield SSEvent(event, _decode("\n".join(data), model))
    except httpx.RemoteProtocolError as exc:
        raise BadModelResponse(f"{model}: the stream broke off ({exc})", model=model) from None
    finally:
        await response.aclose()


def _decode(text: str, model: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise BadModelResponse(
            f"{model}: stream event is not JSON ({exc}): {text[:120]!r}", model=model
        ) from None
    if not isinstance(value, dict):
        raise BadModelResponse(f"{model}: stream event is not a JSON object", model=model)
    return value
