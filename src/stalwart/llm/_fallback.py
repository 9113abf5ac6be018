"""Fallback chains: an ordered list of models; the first that can answer does.

Rules:

- Each call tries the models in order. The primary is always tried first, so
  when it recovers (its breaker closes through half-open trials) traffic
  returns to it with no manual step. An open breaker rejects in microseconds,
  so a dead primary costs nothing while it is open.
- A model is skipped on any failure it alone may cause or suffer: an open
  breaker, exhausted retries, its attempt deadline, context length, content
  policy, auth, a bad response, and a parameter this model does not take
  (:class:`~stalwart.errors.ModelCannotServe`: a 400 ``unsupported_parameter`` /
  ``unsupported_value``, e.g. ``max_tokens`` sent to a reasoning model). Any other
  ``400 Bad Request`` is the request's fault and would fail everywhere: it is
  raised at once.
- A stream (:meth:`FallbackChain.stream`) falls back the same way until its first
  delta is out; after that, a failure is raised (another model would repeat what
  the caller already has).
- Time is shared: every model but the last may use at most ``fallback_share``
  (default half) of what is left of the call's deadline, so a hanging primary
  still leaves the fallbacks time to answer within the same deadline.
- Each switch is a ``model_fallback`` event and a ``stalwart_fallbacks_total``
  sample. While fallbacks serve, the chain is *degraded*
  (``stalwart_degraded{component="chain:NAME"}`` = 1, a ``degradation_started`` event); the first
  call the primary serves again ends it (``degradation_ended`` with its duration,
  added to ``stalwart_degradation_seconds_total{component}``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import msgspec

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import AllModelsFailed, BadModelResponse, ConfigError, ModelHTTPError
from stalwart.llm import _metrics as m
from stalwart.llm._types import (
    ModelClient,
    ModelRequest,
    ModelResponse,
    StreamDelta,
    StreamingModelClient,
    close_stream,
)
from stalwart.observe import EventBus
from stalwart.resilience import classify, deadline_scope, effective_timeout

__all__ = ["FallbackChain"]


class FallbackChain:
    """A :class:`ModelClient` made of ordered models (see the module docstring)."""

    def __init__(
        self,
        name: str,
        models: Sequence[ModelClient],
        *,
        fallback_share: float = 0.5,
        events: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``clock`` times degradations (deadlines are always real time)."""
        if not models:
            raise ConfigError(f"fallback chain {name!r} needs at least one model")
        if not 0 < fallback_share <= 1:
            raise ConfigError(f"fallback chain {name!r}: fallback_share must be in (0, 1]")
        self.name = name
        self.models = tuple(models)
        self.names = tuple(m.name for m in self.models)
        """Each model's ``name``, in order (what a call on the chain may be billed as)."""
        self.fallback_share = fallback_share
        self.events = events or EventBus()
        self.clock = clock
        self.degraded_since: float | None = None
        self._component = f"chain:{name}"

    @property
    def primary(self) -> ModelClient:
        return self.models[0]

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()

    async def complete(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> ModelResponse:
        errors: dict[str, BaseException] = {}
        started = time.perf_counter()
        async with deadline_scope(timeout, kind="model") as deadline:
            for index, model in enumerate(self.models):
                last = index == len(self.models) - 1
                left = deadline.remaining()
                budget = left if last else left * self.fallback_share
                try:
                    response = await model.complete(request, timeout=budget)
                except ModelHTTPError as exc:
                    if exc.status_code == 400:
                        raise  # the request itself is wrong: no model will take it
                    errors[model.name] = exc
                except Exception as exc:
                    errors[model.name] = exc
                else:
                    return self._served(index, response, errors, started)
                if not last:
                    self.events.emit(
                        "model_failed_over",
                        chain=self.name,
                        model=model.name,
                        next_model=self.models[index + 1].name,
                        error_class=classify(errors[model.name]).label,
                        error=str(errors[model.name])[:300],
                    )
        summary = "; ".join(f"{k}: {type(v).__name__}: {v}" for k, v in errors.items())
        raise AllModelsFailed(
            f"every model of chain {self.name!r} failed — {summary}", errors=errors
        )

    async def stream(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamDelta]:
        """Stream the answer of the first model that can give one (see the module
        docstring); a model that cannot stream answers whole, as one text delta. The last
        delta carries the response, with ``fallback_from`` as :meth:`complete` sets it."""
        errors: dict[str, BaseException] = {}
        started = time.perf_counter()
        total = effective_timeout("model", timeout=timeout)
        ends = time.monotonic() + total
        for index, model in enumerate(self.models):
            last = index == len(self.models) - 1
            left = max(0.0, ends - time.monotonic())
            budget = left if last else left * self.fallback_share
            sent = False
            final: ModelResponse | None = None
            try:
                if isinstance(model, StreamingModelClient):
                    stream = model.stream(request, timeout=budget)
                    try:
                        async for delta in stream:
                            if delta.response is not None:
                                final = delta.response
                            else:
                                sent = True
                                yield delta
                    finally:  # our reader may stop early: the model's stream ends with it
                        await close_stream(stream)
                else:
                    final = await model.complete(request, timeout=budget)
                    if final.message.content:
                        sent = True
                        yield StreamDelta(text=final.message.content)
                    for call in final.message.tool_calls:
                        sent = True
                        yield StreamDelta(tool_call=call)
            except ModelHTTPError as exc:
                if exc.status_code == 400 or sent:
                    raise
                errors[model.name] = exc
            except Exception as exc:
                if sent:
                    raise
                errors[model.name] = exc
            else:
                if final is None:
                    errors[model.name] = BadModelResponse(
                        f"{model.name}: the stream ended without a response", model=model.name
                    )
                else:
                    yield StreamDelta(response=self._served(index, final, errors, started))
                    return
            if not last:
                self.events.emit(
                    "model_failed_over",
                    chain=self.name,
                    model=model.name,
                    next_model=self.models[index + 1].name,
                    error_class=classify(errors[model.name]).label,
                    error=str(errors[model.name])[:300],
                )
        summary = "; ".join(f"{k}: {type(v).__name__}: {v}" for k, v in errors.items())
        raise AllModelsFailed(
            f"every model of chain {self.name!r} failed — {summary}", errors=errors
        )

    def _served(
        self,
        index: int,
        response: ModelResponse,
        errors: dict[str, BaseException],
        started: float,
    ) -> ModelResponse:
        now = self.clock.monotonic()
        if index == 0:
            if self.degraded_since is not None:
                duration = now - self.degraded_since
                self.degraded_since = None
                m.DEGRADED.labels(self._component).set(0)
                m.DEGRADATION_SECONDS.labels(self._component).inc(duration)
                self.events.emit(
                    "degradation_ended",
                    chain=self.name,
                    kind="model_fallback",
                    duration_s=round(duration, 3),
                )
            return response
        tried = tuple(errors)
        m.FALLBACKS.labels(self.name, self.primary.name, response.model).inc()
        self.events.emit(
            "model_fallback",
            chain=self.name,
            from_model=self.primary.name,
            to_model=response.model,
            tried=list(tried),
            switch_ms=round((time.perf_counter() - started - response.latency_s) * 1000, 3),
        )
        if self.degraded_since is None:
            self.degraded_since = now
            m.DEGRADED.labels(self._component).set(1)
            m.DEGRADATION_EVENTS.labels(self._component, "model_fallback").inc()
            self.events.emit(
                "degradation_started",
                chain=self.name,
                kind="model_fallback",
                serving=response.model,
            )
        return msgspec.structs.replace(response, fallback_from=tried)
