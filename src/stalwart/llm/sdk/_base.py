"""What the SDK clients share: encode with stalwart's wire format, call the SDK, decode,
and say an SDK's HTTP error in stalwart's words."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from stalwart.errors import DeadlineExceeded, ModelHTTPError
from stalwart.llm._client import WireFormat
from stalwart.llm._http import status_error
from stalwart.llm._sse import SSEvent
from stalwart.llm._types import ModelRequest, ModelResponse, StreamDelta, close_stream

__all__ = ["SDKClient", "dump", "sdk_arguments", "sdk_status_error", "sdk_transport_error"]


def sdk_status_error(
    model: str, status: int, headers: Mapping[str, str], body: object
) -> Exception:
    """An SDK's HTTP status error as the error stalwart's own client raises for the same
    answer. ``body`` is the SDK's parse of the error body (the ``error`` object)."""
    raw = msgspec.json.encode({"error": body}) if body is not None else b""
    return status_error(model, status, headers, raw)


def sdk_transport_error(model: str, exc: Exception, *, timed_out: bool) -> Exception:
    """An SDK's connection error (the SDKs wrap their own HTTP library's, which
    :func:`stalwart.resilience.classify` does not know) as a classified model error:
    a timeout is retryable and transient, a connection that failed retryable and
    systemic, as the built-in clients' httpx errors are."""
    if timed_out:
        return DeadlineExceeded(f"{model}: the request timed out ({exc})")
    return ModelHTTPError(
        f"{model}: no connection to the model's endpoint ({exc})",
        model=model,
        status_code=0,
        retryable="retryable",
        scope="systemic",
    )


class SDKClient:
    """Base of the SDK clients: ``_call`` sends a body and returns the answer's JSON,
    ``_open`` sends a streaming body and returns its events, ``_error`` translates."""

    def __init__(self, wire: WireFormat) -> None:
        self.wire = wire
        self.name = wire.name
        self.capabilities = wire.capabilities

    async def _call(self, body: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        raise NotImplementedError

    def _open(self, body: dict[str, Any], timeout: float | None) -> AsyncIterator[SSEvent]:
        raise NotImplementedError

    def _error(self, exc: Exception) -> Exception:
        """``exc`` in stalwart's words (an SDK's HTTP status and connection errors), or
        ``exc`` itself."""
        return exc

    async def complete(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> ModelResponse:
        """One answer (priced and timed by :class:`~stalwart.llm.GuardedModel`)."""
        body = self.wire.encode(request)
        try:
            data = await self._call(body, timeout)
        except Exception as exc:
            mapped = self._error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        message, finish, usage = self.wire.decode(data)
        return ModelResponse(
            model=self.name,
            message=message,
            finish_reason=finish,
            usage=usage,
            cost_usd=0.0,
            latency_s=0.0,
        )

    async def stream(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamDelta]:
        """The answer as it comes; the last delta carries it whole."""
        assembler = self.wire.assembler()
        events = self._open(self.wire.encode(request, stream=True), timeout)
        try:
            async for event in events:
                for delta in assembler.feed(event):
                    yield delta
        except Exception as exc:
            mapped = self._error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:  # a reader that stops early closes the SDK's stream now
            await close_stream(events)
        message, finish, usage = assembler.result()
        yield StreamDelta(
            response=ModelResponse(
                model=self.name,
                message=message,
                finish_reason=finish,
                usage=usage,
                cost_usd=0.0,
                latency_s=0.0,
            )
        )


def sdk_arguments(body: dict[str, Any], named: tuple[str, ...]) -> dict[str, Any]:
    """The keyword arguments of an SDK call sending ``body``: the ``named`` fields as
    arguments (those the SDK needs, e.g. ``stream`` to return a stream), the rest of
    the body as ``extra_body``, sent as is. So the request is the one stalwart's wire
    format encoded, whichever parameters the installed SDK version lists (the
    ``anthropic`` 2.x SDK no longer takes ``temperature`` as an argument)."""
    arguments = {k: v for k, v in body.items() if k in named}
    extra = {k: v for k, v in body.items() if k not in named}
    if extra:
        arguments["extra_body"] = extra
    return arguments


def dump(value: Any) -> dict[str, Any]:
    """A pydantic object of an SDK as the JSON object it was sent as."""
    data = value.model_dump(mode="json", exclude_none=True)
    if not isinstance(data, dict):
        raise TypeError(f"expected an object, got {type(data).__name__}")
    return data
