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
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from stalwart.llm._types import ModelRequest, Usage
from stalwart.observe import catalog, get_logger, set_span_attributes, start_span
from stalwart.resilience import classify

__all__ = ["observed_call"]

_log = get_logger("stalwart.llm")


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
            f"chat {model}",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.request.max_tokens": request.max_tokens,
            },
            kind="client",
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
        tokens = catalog.MODEL_CALL_TOKENS
        tokens.labels(self._name, self._provider, "input").observe(usage.prompt_tokens)
        tokens.labels(self._name, self._provider, "output").observe(usage.completion_tokens)
        set_span_attributes(
            self._span,
            {
                "gen_ai.response.model": self._model,
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
                "gen_ai.response.finish_reasons": (finish_reason,) if finish_reason else None,
                "stalwart.cost_usd": cost,
            },
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        latency_ms = round((time.perf_counter() - self._started) * 1000, 3)
        usage = self.usage
        if exc is None:
            _log.info(
                "model_call",
                model=self._name,
                provider=self._provider,
                tokens_in=usage.prompt_tokens if usage else 0,
                tokens_out=usage.completion_tokens if usage else 0,
                cost_usd=round(self.cost, 8),
                latency_ms=latency_ms,
                outcome="ok",
            )
        else:
            label = classify(exc).label if isinstance(exc, Exception) else "cancelled"
            set_span_attributes(self._span, {"error.type": type(exc).__name__})
            _log.warning(
                "model_call",
                model=self._name,
                provider=self._provider,
                tokens_in=0,
                tokens_out=0,
                cost_usd=0.0,
                latency_ms=latency_ms,
                outcome="error",
                error_class=label,
                error_type=type(exc).__name__,
            )
        return self._cm.__exit__(exc_type, exc, tb)
