"""The shared path of every HTTP model client: policy, limits, usage, cost, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from prometheus_client import Counter

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ConfigError, DeadlineExceeded, ModelAuthError, RetriesExhausted
from stalwart.llm import _metrics as m
from stalwart.llm._capabilities import Capabilities, capabilities_for
from stalwart.llm._http import ApiKey, environment_proxy, post_json, resolve_key
from stalwart.llm._netbackend import AsyncioTransport
from stalwart.llm._pricing import PriceTable
from stalwart.llm._sse import SSEvent, iter_events, open_stream
from stalwart.llm._trace import observed_call, observed_stream
from stalwart.llm._types import Message, ModelRequest, ModelResponse, StreamDelta, Usage
from stalwart.observe import REGISTRY, EventBus
from stalwart.resilience import (
    DEFAULT_BREAKER,
    DEFAULT_RETRY,
    BreakerConfig,
    CircuitBreaker,
    Policy,
    RetryPolicy,
    classify,
    deadline_scope,
    effective_timeout,
)

__all__ = ["HTTPModelClient", "StreamAssembler", "WireFormat", "failure_class"]

DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024

KEY_REFRESHES = Counter(
    "stalwart_model_key_refreshes",
    "API keys re-read from their secret provider after a 401 (a rotated key)",
    ["model", "provider"],
    registry=REGISTRY,
)


def failure_class(exc: BaseException) -> str:
    """The class label of a failed model call: that of the error that made it fail.

    Exhausted retries are labelled with their last attempt's error (a connection
    refused is ``retryable/systemic`` in the error, the log and ``/metrics`` alike).
    """
    if isinstance(exc, RetriesExhausted) and exc.last_error is not None:
        return classify(exc.last_error).label
    return classify(exc).label


class StreamAssembler:
    """Turns one provider's stream events into :class:`StreamDelta` s and, at the end,
    into the same ``(message, finish_reason, usage)`` a plain call decodes."""

    def feed(self, event: SSEvent) -> list[StreamDelta]:
        raise NotImplementedError

    def result(self) -> tuple[Message, str, Usage]:
        raise NotImplementedError


class WireFormat:
    """One provider's wire format for one model: how a :class:`ModelRequest` is encoded
    (from the model's capabilities) and how an answer, whole or streamed, is decoded.

    The HTTP clients are built on it, and so are the official-SDK adapters
    (:mod:`stalwart.llm.sdk`), which hand the same body to the SDK: both send what
    the capability table says the model takes.
    """

    provider = ""
    """The provider key in model strings (``openai`` in ``openai:gpt-4o``); a subclass sets
    its default, and ``provider=`` overrides it (``sim`` for the simulated models)."""
    wire = ""
    """The wire format (``openai``, ``openai-responses`` or ``anthropic``), which keys the
    capability table."""

    def __init__(
        self, model: str, *, provider: str | None = None, capabilities: Capabilities | None = None
    ) -> None:
        if not model:
            raise ConfigError("a model client needs a model name")
        if provider is not None:
            self.provider = provider
        self.model = model
        self.name = f"{self.provider}:{model}"
        self.capabilities = capabilities or capabilities_for(self.wire, model)

    def encode(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        """The request's body on this wire (``stream``: asking for an event stream)."""
        return self._encode(request, stream=stream)

    def decode(self, data: dict[str, Any]) -> tuple[Message, str, Usage]:
        """A whole answer's JSON body as (message, finish reason, usage); a body of the
        wrong shape is a :class:`~stalwart.errors.BadModelResponse`."""
        return self._decode(data)

    def assembler(self) -> StreamAssembler:
        """A fresh assembler for one streamed answer's events."""
        return self._assembler()

    def _encode(self, request: ModelRequest, *, stream: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def _decode(self, data: dict[str, Any]) -> tuple[Message, str, Usage]:
        raise NotImplementedError

    def _assembler(self) -> StreamAssembler:
        raise NotImplementedError


class HTTPModelClient(WireFormat):
    """Base of the provider adapters. Subclasses say how to encode and decode.

    Each call runs under ``timeout`` (or the ``model`` kind's default, 60 s) as
    a whole, through one :class:`~stalwart.resilience.Policy` per endpoint:
    per-attempt deadline, classification, retry with backoff and full jitter
    (``Retry-After`` honoured), and a circuit breaker named after the model.
    The underlying HTTP client makes no retries of its own.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        provider: str | None = None,
        api_key: ApiKey = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        breaker: BreakerConfig | CircuitBreaker | None = DEFAULT_BREAKER,
        attempt_timeout: float | None = None,
        prices: PriceTable | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        http: httpx.AsyncClient | None = None,
        events: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        capabilities: Capabilities | None = None,
    ) -> None:
        super().__init__(model, provider=provider, capabilities=capabilities)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._prices = prices or PriceTable()
        self._prices.price(self.name)  # an unknown model fails here, not as a silent $0
        self._max_bytes = max_response_bytes
        self._own_http = http is None
        # retries are ours (the Policy), so the transport gets none of its own
        # As many connections as an agent process keeps calls in flight (max_tasks,
        # default 1000), all kept alive: with 2 s calls, a cap of 100 bounded a process
        # to 50 calls/s, and a keep-alive pool of 20 re-opened a connection per call.
        # The limits go to the transport: httpx applies a client's ``limits=`` only to
        # a transport it builds itself, so beside ``transport=`` they were ignored.
        # The requests of a client built here go straight to its transport (a user's own
        # client is used as it is, and so is httpx's proxy transport for a proxy the
        # environment names).
        self._direct: httpx.AsyncBaseTransport | None = None
        if http is None:
            limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
            timeouts = httpx.Timeout(60.0, connect=10.0)
            proxy = environment_proxy(self.base_url)
            if proxy is None:
                # asyncio-native connections (no anyio layer per read, write, pool check)
                transport = AsyncioTransport(limits=limits, retries=0)
                http = httpx.AsyncClient(timeout=timeouts, transport=transport)
                self._direct = transport
            else:
                http = httpx.AsyncClient(timeout=timeouts, proxy=proxy, limits=limits)
        self._http = http
        self._meter_cache: _Meters | None = None
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
        if self._own_http:
            await self._http.aclose()

    # -- to be provided by an adapter ------------------------------------------------------
    def _endpoint(self) -> str:
        raise NotImplementedError

    def _headers(self, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    # -- the call ---------------------------------------------------------------------------
    async def complete(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> ModelResponse:
        """Ask the model; raise a classified :class:`~stalwart.errors.ModelError` (or
        ``CircuitOpen``, ``DeadlineExceeded``) when it cannot answer; after the last retry,
        the last attempt's error (see :func:`stalwart.resilience.gave_up`)."""
        started = time.perf_counter()
        with observed_call(self.provider, self.model, self.name, request) as observed:
            try:
                async with deadline_scope(timeout, kind="model"):
                    message, finish, usage = await self.policy.acall(self._attempt, request)
            except Exception as exc:
                m.MODEL_ERRORS.labels(self.name, self.provider, failure_class(exc)).inc()
                raise
            response = self._response(message, finish, usage, started)
            observed.answered(usage, finish, response.cost_usd)
        return response

    async def stream(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> AsyncIterator[StreamDelta]:
        """Ask the model and yield its answer as it comes (:class:`StreamDelta` s); the last
        delta carries the assembled :class:`ModelResponse`, equal to what ``complete`` gives.

        Opening the stream goes through the same policy as ``complete`` (deadline,
        retry, breaker): until the first byte of the answer a failure is retried. Once
        text has been yielded nothing is retried (a retry would repeat it): a broken
        stream raises :class:`~stalwart.errors.BadModelResponse`, a slow one
        :class:`~stalwart.errors.DeadlineExceeded` at the call's deadline.
        """
        started = time.perf_counter()
        # one span and one log line for the whole stream, as for ``complete``; the span is
        # current only around this client's awaits (retry events land on it), not while
        # the consumer handles a delta
        observed = observed_stream(self.provider, self.model, self.name, request)
        try:
            try:
                total = effective_timeout("model", timeout=timeout)
                ends = time.monotonic() + total
                with observed.current():
                    async with deadline_scope(total, kind="model"):
                        response = await self.policy.acall(self._open, request)
                assembler = self._assembler()
                events = iter_events(response, model=self.name, max_bytes=self._max_bytes)
                try:
                    while True:
                        try:
                            with observed.current():
                                async with asyncio.timeout_at(_loop_time(ends)):
                                    event = await anext(events)
                        except StopAsyncIteration:
                            break
                        except TimeoutError:
                            raise DeadlineExceeded(
                                f"{self.name}: the stream did not finish within {total:g} s"
                            ) from None
                        for delta in assembler.feed(event):
                            yield delta
                finally:
                    await events.aclose()
                message, finish, usage = assembler.result()
            except Exception as exc:
                m.MODEL_ERRORS.labels(self.name, self.provider, failure_class(exc)).inc()
                raise
            result = self._response(message, finish, usage, started)
            observed.answered(usage, finish, result.cost_usd)
            observed.end()  # before the last delta: a consumer may stop reading after it
            yield StreamDelta(response=result)
        except BaseException as exc:  # also a consumer that stops reading (GeneratorExit)
            observed.end(exc)
            raise

    def _response(
        self, message: Message, finish: str, usage: Usage, started: float
    ) -> ModelResponse:
        cost = self._prices.cost(self.name, usage)
        meters = self._meters()
        meters.tokens_in.inc(usage.prompt_tokens)
        meters.tokens_out.inc(usage.completion_tokens)
        meters.cost.inc(cost)
        return ModelResponse(
            model=self.name,
            message=message,
            finish_reason=finish,
            usage=usage,
            cost_usd=cost,
            latency_s=time.perf_counter() - started,
        )

    async def _open(self, request: ModelRequest) -> httpx.Response:
        started = time.perf_counter()
        m.MODEL_REQUESTS.labels(self.name, self.provider, "stream").inc()
        try:
            key = await resolve_key(self._api_key)
            return await open_stream(
                self._http,
                self._endpoint(),
                model=self.name,
                headers=self._headers(key),
                body=self._encode(request, stream=True),
                timeout=self._attempt_seconds(),
                transport=self._direct,
            )
        finally:
            m.MODEL_LATENCY.labels(self.name, self.provider, "stream").observe(
                time.perf_counter() - started
            )

    async def _attempt(self, request: ModelRequest) -> tuple[Message, str, Usage]:
        started = time.perf_counter()
        meters = self._meters()
        meters.requests.inc()
        try:
            key = await resolve_key(self._api_key)
            try:
                data = await self._post(key, request)
            except ModelAuthError:
                # A key provider (``secret://``) may hold a rotated key: refresh it once and
                # retry this attempt with the current value; a second 401 is the answer.
                refresh = getattr(self._api_key, "refresh", None)
                if not callable(refresh):
                    raise
                refresh()
                fresh = await resolve_key(self._api_key)
                if fresh == key:
                    raise
                KEY_REFRESHES.labels(self.name, self.provider).inc()
                data = await self._post(fresh, request)
            return self._decode(data)
        finally:
            meters.latency.observe(time.perf_counter() - started)

    async def _post(self, key: str | None, request: ModelRequest) -> dict[str, Any]:
        return await post_json(
            self._http,
            self._endpoint(),
            model=self.name,
            headers=self._headers(key),
            body=self._encode(request),
            timeout=self._attempt_seconds(),
            max_bytes=self._max_bytes,
            transport=self._direct,
        )

    def _meters(self) -> _Meters:
        """This model's series of the plain calls' metrics (labelled once, when first used:
        a ``labels`` lookup per use was a few microseconds each, six per call)."""
        meters = self._meter_cache
        if meters is None:
            meters = self._meter_cache = _Meters(self.name, self.provider)
        return meters

    def _attempt_seconds(self) -> float:
        return effective_timeout("model", timeout=self.policy.timeout)


class _Meters:
    """One model's series of the request, latency, token and cost metrics (chat calls)."""

    __slots__ = ("cost", "latency", "requests", "tokens_in", "tokens_out")

    def __init__(self, name: str, provider: str) -> None:
        self.requests = m.MODEL_REQUESTS.labels(name, provider, "chat")
        self.latency = m.MODEL_LATENCY.labels(name, provider, "chat")
        self.tokens_in = m.MODEL_TOKENS.labels(name, provider, "input")
        self.tokens_out = m.MODEL_TOKENS.labels(name, provider, "output")
        self.cost = m.COST.labels(name, provider)


def _loop_time(monotonic_at: float) -> float:
    """``time.monotonic()`` instant as the running loop's clock reads it."""
    return asyncio.get_running_loop().time() + (monotonic_at - time.monotonic())
