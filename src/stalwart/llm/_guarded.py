"""Your own model client, with stalwart's deadline, retry, breaker, metrics and cost around it."""

from __future__ import annotations

import time

import msgspec

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.llm import _metrics as m
from stalwart.llm._client import failure_class
from stalwart.llm._pricing import PriceTable
from stalwart.llm._types import ModelClient, ModelRequest, ModelResponse
from stalwart.observe import EventBus
from stalwart.resilience import (
    DEFAULT_BREAKER,
    DEFAULT_RETRY,
    BreakerConfig,
    CircuitBreaker,
    Policy,
    RetryPolicy,
    deadline_scope,
    effective_timeout,
)

__all__ = ["GuardedModel"]


class GuardedModel:
    """A :class:`~stalwart.llm.ModelClient` you wrote (an SDK, a gateway, LiteLLM…), run the
    way stalwart runs its own clients.

    Each ``complete`` runs under the call's deadline (``timeout``, or the ``model``
    kind's default) through a :class:`~stalwart.resilience.Policy` named after the
    model: per-attempt deadline (``attempt_timeout``), retry with backoff of the
    errors classified retryable, a circuit breaker. Raise stalwart's model errors
    (or any error :func:`~stalwart.resilience.classify` knows, e.g. httpx's) so
    they are classified right. With ``prices``, the response's ``cost_usd`` is
    computed from its usage (an unknown model is a ConfigError here, at start-up).
    In a :class:`~stalwart.llm.FallbackChain` it falls back; in an agent its calls
    are budgeted and journaled like any other.
    """

    def __init__(
        self,
        inner: ModelClient,
        *,
        provider: str = "",
        retry: RetryPolicy | None = DEFAULT_RETRY,
        breaker: BreakerConfig | CircuitBreaker | None = DEFAULT_BREAKER,
        attempt_timeout: float | None = None,
        prices: PriceTable | None = None,
        events: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.provider = provider or inner.name.partition(":")[0]
        self._prices = prices
        if prices is not None:
            prices.price(self.name)
        self.policy = Policy(
            self.name,
            kind="model" if attempt_timeout is None else None,
            timeout=attempt_timeout,
            retry=retry,
            breaker=breaker,
            events=events,
            clock=clock,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def complete(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> ModelResponse:
        started = time.perf_counter()
        try:
            async with deadline_scope(timeout, kind="model"):
                response = await self.policy.acall(self._attempt, request)
        except Exception as exc:
            m.MODEL_ERRORS.labels(self.name, self.provider, failure_class(exc)).inc()
            raise
        if self._prices is not None:
            cost = self._prices.cost(self.name, response.usage)
            response = msgspec.structs.replace(response, cost_usd=cost)
        m.MODEL_TOKENS.labels(self.name, self.provider, "input").inc(response.usage.prompt_tokens)
        m.MODEL_TOKENS.labels(self.name, self.provider, "output").inc(
            response.usage.completion_tokens
        )
        m.COST.labels(self.name, self.provider).inc(response.cost_usd)
        return msgspec.structs.replace(response, latency_s=time.perf_counter() - started)

    async def _attempt(self, request: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        m.MODEL_REQUESTS.labels(self.name, self.provider, "chat").inc()
        try:
            seconds = effective_timeout("model", timeout=self.policy.timeout)
            return await self.inner.complete(request, timeout=seconds)
        finally:
            m.MODEL_LATENCY.labels(self.name, self.provider, "chat").observe(
                time.perf_counter() - started
            )
