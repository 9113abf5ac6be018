"""One model call, observed: its ``chat`` span (GenAI conventions) and its log line.

:func:`observed_call` wraps one call to one model (a chain calls it once per
model it tries). The span is ``chat {model}`` (kind client) with
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.request.max_tokens`` and, once answered, ``gen_ai.response.model``,
``gen_ai.response.finish_reasons``, ``gen_ai.usage.input_tokens`` /
``output_tokens`` and ``stalwart.cost_usd``; a failure sets ``error.type`` and
the span's error status. The log line is ``model_call`` (info; ``warning`` when
it failed) with ``model``, ``provider``, ``tokens_in``, ``tokens_out``,
``cost_usd``, ``latency_ms``, ``outcome`` (``ok`` or ``error``) and
``error_class``; it passes the redactor like every line. Tokens per call go to
``stalwart_model_call_tokens`` (exported over OTLP as ``gen_ai.client.token.usage``).
A response without usage (all counts 0: the provider reported none) sets no token
attributes and observes no token histogram (0 would be a false count).

:class:`observed_stream` observes a streamed call the same way: one span from the
request to the stream's last event (``stalwart.streamed`` true), the same attributes
(usage as the stream reports it: OpenAI's last chunk, Anthropic's ``message_start`` /
``message_delta``, the Responses API's ``response.completed``) and the same log line
with ``streamed`` true. Its span is current only while the client works (opening
the stream, with its retries; reading the next event), never while the consumer
handles a delta. A stream its consumer abandons ends as ``error_class=cancelled``.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any

from prometheus_client import Histogram

from stalwart.llm._types import ModelRequest, Usage
from stalwart.observe import (
    AttrValue,
    catalog,
    get_logger,
    hold_span,
    set_span_attributes,
    start_span,
)
from stalwart.resilience import classify

__all__ = ["observed_call", "observed_stream"]

_log = get_logger("stalwart.llm")
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()
_NO_USAGE = Usage()
_TOKENS: dict[tuple[str, str], tuple[Histogram, Histogram]] = {}
"""Per (model, provider), its two series of the tokens histogram (a ``labels`` lookup per
observation cost a few microseconds)."""


def _request_attributes(provider: str, model: str, request: ModelRequest) -> dict[str, AttrValue]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": request.max_tokens,
    }


def _answer(
    span: Any, usage: Usage, finish: str, cost: float, *, name: str, provider: str, model: str
) -> None:
    reported = usage != _NO_USAGE
    if reported:
        series = _TOKENS.get((name, provider))
        if series is None:
            tokens = catalog.MODEL_CALL_TOKENS
            series = _TOKENS[name, provider] = (
                tokens.labels(name, provider, "input"),
                tokens.labels(name, provider, "output"),
            )
        series[0].observe(usage.prompt_tokens)
        series[1].observe(usage.completion_tokens)
    set_span_attributes(
        span,
        {
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": usage.prompt_tokens if reported else None,
            "gen_ai.usage.output_tokens": usage.completion_tokens if reported else None,
            "gen_ai.response.finish_reasons": (finish,) if finish else None,
            "stalwart.cost_usd": cost,
        },
    )


def _log_end(
    exc: BaseException | None,
    *,
    name: str,
    provider: str,
    usage: Usage | None,
    cost: float,
    started: float,
    extra: dict[str, Any],
) -> None:
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    if exc is None:
        _log.info(
            "model_call",
            model=name,
            provider=provider,
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
            cost_usd=round(cost, 8),
            latency_ms=latency_ms,
            outcome="ok",
            **extra,
        )
    else:
        _log.warning(
            "model_call",
            model=name,
            provider=provider,
            tokens_in=0,
            tokens_out=0,
            cost_usd=0.0,
            latency_ms=latency_ms,
            outcome="error",
            error_class=classify(exc).label if isinstance(exc, Exception) else "cancelled",
            error_type=type(exc).__name__,
            **extra,
        )


class observed_call:  # lower case: used as a ``with`` block, like contextlib's helpers
    """``with observed_call(provider, model, name, request) as call: ...; call.answered(...)``."""

    __slots__ = ("_cm", "_model", "_name", "_provider", "_span", "_started", "cost", "usage")

    def __init__(self, provider: str, model: str, name: str, request: ModelRequest) -> None:
        self._provider = provider
        self._model = model
        self._name = name
        self.usage: Usage | None = None
        self.cost = 0.0
        self._cm = start_span(
            f"chat {model}", _request_attributes(provider, model, request), kind="client"
        )
        self._span: Any = None
        self._started = 0.0

    def __enter__(self) -> observed_call:
        self._span = self._cm.__enter__()
        self._started = time.perf_counter()
        return self

    def answered(self, usage: Usage, finish_reason: str, cost: float) -> None:
        """Record the answer (called before the ``with`` block ends)."""
        self.usage = usage
        self.cost = cost
        _answer(
            self._span,
            usage,
            finish_reason,
            cost,
            name=self._name,
            provider=self._provider,
            model=self._model,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        _log_end(
            exc,
            name=self._name,
            provider=self._provider,
            usage=self.usage,
            cost=self.cost,
            started=self._started,
            extra={},
        )
        if exc is not None:
            set_span_attributes(self._span, {"error.type": type(exc).__name__})
        return self._cm.__exit__(exc_type, exc, tb)


class observed_stream:  # lower case, like observed_call
    """One streamed call: ``observed = observed_stream(...)``; ``with observed.current():``
    around the client's own awaits; ``observed.answered(...)``; ``observed.end(exc)``
    exactly when the stream is over (a second ``end`` does nothing)."""

    __slots__ = ("_ended", "_held", "_model", "_name", "_provider", "_started", "cost", "usage")

    def __init__(self, provider: str, model: str, name: str, request: ModelRequest) -> None:
        self._provider = provider
        self._model = model
        self._name = name
        self.usage: Usage | None = None
        self.cost = 0.0
        attributes = _request_attributes(provider, model, request)
        attributes["stalwart.streamed"] = True
        self._held = hold_span(f"chat {model}", attributes, kind="client")
        self._started = time.perf_counter()
        self._ended = False

    def current(self) -> contextlib.AbstractContextManager[None]:
        """The call's span made current for a block that does not ``yield``."""
        return _OFF if self._held is None else self._held.current()

    def answered(self, usage: Usage, finish_reason: str, cost: float) -> None:
        self.usage = usage
        self.cost = cost
        span = None if self._held is None else self._held.span
        _answer(
            span,
            usage,
            finish_reason,
            cost,
            name=self._name,
            provider=self._provider,
            model=self._model,
        )

    def end(self, exc: BaseException | None = None) -> None:
        """The stream is over (``exc``: how it failed): log the call, end its span."""
        if self._ended:
            return
        self._ended = True
        _log_end(
            exc,
            name=self._name,
            provider=self._provider,
            usage=self.usage,
            cost=self.cost,
            started=self._started,
            extra={"streamed": True},
        )
        if self._held is not None:
            self._held.end(exc)
