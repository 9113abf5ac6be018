"""Your own model client, with stalwart's deadline, retry, breaker, metrics and cost around it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import BadModelResponse, DeadlineExceeded
from stalwart.llm import _metrics as m
from stalwart.llm._client import failure_class
from stalwart.llm._pricing import PriceTable
from stalwart.llm._trace import observed_call, observed_stream
from stalwart.llm._types import (
    ModelClient,
    ModelRequest,
    ModelResponse,
    StreamDelta,
    StreamingModelClient,
    close_stream,
)
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
    are budgeted and journaled like any other. Each call is a ``chat`` span and one
    ``model_call`` log line, as a built-in client's.

    ``stream`` streams when ``inner`` is a :class:`~stalwart.llm.StreamingModelClient`:
    until its first delta a failure is retried (the whole attempt runs under the
    per-attempt deadline); after it nothing is (a retry would repeat text), and the
    call's deadline bounds the rest. Otherwise it answers whole, as one text delta and
    its tool calls. The last delta carries the response, priced.
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
        self._model = inner.name.partition(":")[2] or inner.name
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
        with observed_call(self.provider, self._model, self.name, request) as observed:
            try:
                async with deadline_scope(timeout, kind="model"):
                    response = await self.policy.acall(self._attempt, request)
            except Exception as exc:
                m.MODEL_ERRORS.labels(self.name, self.provider, failure_class(exc)).inc()
                raise
            response = self._priced(response, started)
            observed.answered(response.usage, response.finish_reason, response.cost_usd)
        return response

    async def stream(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamDelta]:
        """The answer as it comes (see the class docstring)."""
        if not isinstance(self.inner, StreamingModelClient):
            whole = await self.complete(request, timeout=timeout)
            if whole.message.content:
                yield StreamDelta(text=whole.message.content)
            for call in whole.message.tool_calls:
                yield StreamDelta(tool_call=call)
            yield StreamDelta(response=whole)
            return
        started = time.perf_counter()
        observed = observed_stream(self.provider, self._model, self.name, request)
        try:
            try:
                total = effective_timeout("model", timeout=timeout)
                ends = time.monotonic() + total
                with observed.current():
                    async with deadline_scope(total, kind="model"):
                        stream, delta = await self.policy.acall(self._open, request)
                final: ModelResponse | None = None
                try:
                    while final is None:
                        if delta.response is not None:
                            final = delta.response
                            break
                        yield delta
                        try:
                            with observed.current():
                                left = ends - time.monotonic()
                                async with asyncio.timeout(max(0.0, left)):
                                    delta = await anext(stream)
                        except StopAsyncIteration:
                            raise BadModelResponse(
                                f"{self.name}: the stream ended without a response",
                                model=self.name,
                            ) from None
                        except TimeoutError:
                            raise DeadlineExceeded(
                                f"{self.name}: the stream did not finish within {total:g} s"
                            ) from None
                finally:
                    await close_stream(stream)
            except Exception as exc:
                m.MODEL_ERRORS.labels(self.name, self.provider, failure_class(exc)).inc()
                raise
            response = self._priced(final, started)
            observed.answered(response.usage, response.finish_reason, response.cost_usd)
            observed.end()  # before the last delta: a consumer may stop reading after it
            yield StreamDelta(response=response)
        except BaseException as exc:  # also a consumer that stops reading (GeneratorExit)
            observed.end(exc)
            raise

    def _priced(self, response: ModelResponse, started: float) -> ModelResponse:
        if self._prices is not None:
            cost = self._prices.cost(self.name, response.usage)
            response = msgspec.structs.replace(response, cost_usd=cost)
        m.MODEL_TOKENS.labels(self.name, self.provider, "input").inc(response.usage.prompt_tokens)
        m.MODEL_TOKENS.labels(self.name, self.provider, "output").inc(
            response.usage.completion_tokens
        )
        m.COST.labels(self.name, self.provider).inc(response.cost_usd)
        return msgspec.structs.replace(response, latency_s=time.perf_counter() - started)

    async def _open(self, request: ModelRequest) -> tuple[AsyncIterator[StreamDelta], StreamDelta]:
        """One attempt at a stream: open it and read its first delta."""
        assert isinstance(self.inner, StreamingModelClient)
        started = time.perf_counter()
        m.MODEL_REQUESTS.labels(self.name, self.provider, "stream").inc()
        stream = self.inner.stream(
            request, timeout=effective_timeout("model", timeout=self.policy.timeout)
        )
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            await close_stream(stream)
            raise BadModelResponse(
                f"{self.name}: the stream ended before its first delta", model=self.name
            ) from None
        except BaseException:
            await close_stream(stream)
            raise
        finally:
            m.MODEL_LATENCY.labels(self.name, self.provider, "stream").observe(
                time.perf_counter() - started
            )
        return stream, first

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
