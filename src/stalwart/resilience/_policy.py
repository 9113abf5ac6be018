"""One policy per dependency: deadline + rate limit + breaker + classification + retry + metrics.

Each attempt of :meth:`Policy.call` / :meth:`Policy.acall` goes through, in order:

1. **deadline** — the attempt runs under ``min(kind/timeout default, what the
   overall deadline has left)``; the overall deadline is ``min(retry.deadline,
   the caller's enclosing deadline)``. Async attempts are cancelled at it and
   raise :class:`~stalwart.errors.DeadlineExceeded`; sync attempts see it
   through :func:`~stalwart.resilience.effective_timeout`.
2. **rate limit** (optional) — async waits for a slot within the deadline,
   sync only takes a free one; otherwise :class:`~stalwart.errors.RateLimited`.
3. **breaker** — an open breaker raises :class:`~stalwart.errors.CircuitOpen`
   at once, and the call is not made.
4. **the call**, timed.
5. **classification** of a failure: counted in ``stalwart_errors_total``, fed
   to the breaker (permanent errors are ignored by it), then either raised as is
   (permanent), retried after a backoff, or given up on (attempts used up, or
   the next attempt could not start before the deadline): the last attempt's
   own error is re-raised with a :class:`~stalwart.resilience.GaveUp` record
   attached (``RetryPolicy(on_exhausted="wrap")``: a
   :class:`~stalwart.errors.RetriesExhausted` from it instead). When the
   failure just recorded tripped this policy's breaker, retrying stops with
   :class:`~stalwart.errors.CircuitOpen` raised from it.

A rejection by this policy's own breaker or limiter is never retried: failing
fast is their purpose.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, ParamSpec, TypeVar, cast, overload

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import CircuitOpen, ConfigError, DeadlineExceeded, RetriesExhausted
from stalwart.observe import EventBus
from stalwart.resilience._breaker import (
    BREAKERS,
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    Permit,
)
from stalwart.resilience._classify import Classification, classify, describe
from stalwart.resilience._deadline import _CURRENT, Deadline, default_timeouts
from stalwart.resilience._metrics import CALL_DURATION, ERRORS, GIVE_UPS, RETRIES, emit
from stalwart.resilience._ratelimit import RateLimiter, TokenBucket, _reject
from stalwart.resilience._retry import GaveUp, RetryPolicy, mark_gave_up

__all__ = ["DEFAULT_BREAKER", "DEFAULT_RETRY", "Policy"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_RETRY = RetryPolicy()
"""The retry settings a :class:`Policy` uses unless told otherwise."""

DEFAULT_BREAKER = BreakerConfig()
"""The breaker settings a :class:`Policy` uses unless told otherwise."""


class Policy:
    """Everything an external call needs, for one named dependency.

    name
        The dependency (``"openai:gpt-4o"``, ``"tool:send_email"``…): the
        breaker's name in the registry and the ``dependency`` label on every
        metric and log line.
    kind
        Operation kind whose configured timeout bounds each attempt
        (``"model"``, ``"tool"``, ``"health"``, ``"store"``, ``"notifier"``…).
    timeout
        Seconds per attempt, instead of the kind's default. One of ``kind`` and
        ``timeout`` is required: there is no "forever".
    retry
        A :class:`RetryPolicy`, or ``None`` for a single attempt whose error is
        raised as is (default :data:`DEFAULT_RETRY`).
    breaker
        A :class:`BreakerConfig` (the breaker named ``name`` is taken from
        ``registry``, created if new), a ready :class:`CircuitBreaker`, or
        ``None`` for no breaker (default :data:`DEFAULT_BREAKER`).
    rate_limiter
        An optional :class:`TokenBucket` or :class:`RateLimiter`.
    registry
        Where the breaker lives (default :data:`BREAKERS`).
    events
        An :class:`~stalwart.observe.EventBus` to emit retries, give-ups and
        errors on (default: log them). A breaker this policy creates emits its
        transitions and rejections there too; a breaker that already existed
        keeps the bus it was created with.
    clock
        Time source (default the system clock; tests pass a ``FakeClock``).
    sync_sleep
        How :meth:`call` waits between attempts (default :func:`time.sleep`;
        tests pass ``fake_clock.advance``).
    """

    def __init__(
        self,
        name: str,
        *,
        kind: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        breaker: BreakerConfig | CircuitBreaker | None = DEFAULT_BREAKER,
        rate_limiter: TokenBucket | RateLimiter | None = None,
        registry: BreakerRegistry | None = None,
        events: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        sync_sleep: Callable[[float], None] = time.sleep,
        _allow_unbounded: bool = False,  # internal: RetryPolicy.call's retry-only policies
    ) -> None:
        if not name:
            raise ConfigError("a Policy needs a dependency name")
        if kind is None and timeout is None and not _allow_unbounded:
            raise ConfigError(
                f"Policy({name!r}) needs kind= or timeout=: every attempt must have a deadline"
            )
        if kind is not None:
            default_timeouts().for_kind(kind)  # unknown kind: ConfigError now, not at call time
        if timeout is not None and (
            not isinstance(timeout, int | float) or not 0 < timeout < float("inf")
        ):
            raise ConfigError(f"Policy({name!r}).timeout = {timeout!r} must be > 0 seconds")
        self.name = name
        self.kind = kind
        self.timeout = timeout
        self.retry = retry
        self.events = events
        self.clock = clock
        self.rate_limiter = rate_limiter
        self._sync_sleep = sync_sleep
        if isinstance(breaker, CircuitBreaker):
            self.breaker: CircuitBreaker | None = breaker
        elif breaker is not None:
            self.breaker = (registry if registry is not None else BREAKERS).get(
                name, breaker, clock=clock, events=events
            )
        else:
            self.breaker = None
        self._duration = CALL_DURATION.labels(name)
        self._errors: dict[str, Any] = {}
        self._retries: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Policy({self.name!r}, kind={self.kind!r}, timeout={self.timeout!r})"

    # -- deadlines -----------------------------------------------------------------------

    def _overall_deadline(self) -> Deadline | None:
        parent = _CURRENT.get()
        retry = self.retry
        if retry is None or retry.deadline is None:
            return parent
        own = Deadline(self.clock.monotonic() + retry.deadline, clock=self.clock)
        return own.earliest(parent)

    def _attempt_deadline(self, overall: Deadline | None) -> Deadline | None:
        seconds = self.timeout
        if seconds is None and self.kind is not None:
            seconds = default_timeouts().for_kind(self.kind)
        if seconds is None:
            return overall
        own = Deadline(self.clock.monotonic() + seconds, clock=self.clock)
        return own.earliest(overall) if overall is not None else own

    # -- failure handling (shared by sync and async) ---------------------------------------

    def _count_error(self, label: str) -> None:
        child = self._errors.get(label)
        if child is None:
            child = self._errors[label] = ERRORS.labels(self.name, label)
        child.inc()

    def _failed(
        self,
        exc: Exception,
        attempt: int,
        duration: float,
        permit: Permit | None,
        overall: Deadline | None,
    ) -> float:
        """Record a failed attempt; return the wait before the next one, or raise to stop."""
        cls = classify(exc, now=self.clock.time())
        label = cls.label
        self._count_error(label)
        breaker = self.breaker
        if breaker is not None and permit is not None:
            if cls.retryable:
                breaker.on_failure(permit, duration, label)
            else:
                breaker.on_ignored(permit)
        retry = self.retry
        if not cls.retryable or retry is None:
            emit(
                self.events,
                "warning",
                "dependency_error",
                dependency=self.name,
                error_class=label,
                reason=cls.reason,
                attempt=attempt,
                error=describe(exc),
            )
            raise exc
        if breaker is not None and breaker._state is BreakerState.OPEN:
            self._give_up(exc, cls, attempt, "circuit_open")  # this failure tripped it
        if attempt >= retry.max_attempts:
            self._give_up(exc, cls, attempt, "attempts")
        delay = retry.delay(attempt, retry_after=cls.retry_after)
        if overall is not None:
            left = overall.remaining()
            # ``left - delay`` below a microsecond is float noise, not time for an attempt:
            # waiting it out would only end in giving up after the wait.
            if left - delay < 1e-6:
                self._give_up(exc, cls, attempt, "deadline", left=left, delay=delay)
        child = self._retries.get(label)
        if child is None:
            child = self._retries[label] = RETRIES.labels(self.name, label)
        child.inc()
        emit(
            self.events,
            "info",
            "dependency_retry",
            dependency=self.name,
            error_class=label,
            reason=cls.reason,
            attempt=attempt,
            delay=round(delay, 4),
            retry_after=cls.retry_after,
            error=describe(exc),
        )
        return delay

    def _give_up(
        self,
        exc: Exception,
        cls: Classification,
        attempts: int,
        why: str,
        *,
        left: float | None = None,
        delay: float | None = None,
    ) -> NoReturn:
        GIVE_UPS.labels(self.name, why).inc()
        emit(
            self.events,
            "warning",
            "dependency_gave_up",
            dependency=self.name,
            error_class=cls.label,
            reason=why,
            attempts=attempts,
            error=describe(exc),
        )
        if why == "circuit_open":
            raise CircuitOpen(
                f"{self.name}: stopped retrying after {attempts} attempt(s): the circuit "
                f"breaker is open; last error ({cls.label}): {describe(exc)}",
                dependency=self.name,
            ) from exc
        if why == "deadline":
            detail = (
                f"the next attempt could not start before the deadline "
                f"(next wait {delay or 0:.3g} s, {left or 0:.3g} s left)"
            )
        else:
            detail = f"all {attempts} attempts failed"
        retry = self.retry
        if retry is not None and retry.on_exhausted == "wrap":
            raise RetriesExhausted(
                f"{self.name}: gave up after {attempts} attempt(s): {detail}; "
                f"last error ({cls.label}): {describe(exc)}",
                dependency=self.name,
                attempts=attempts,
                last_error=exc,
            ) from exc
        # stamina's rule: the caller gets the error the dependency raised, so code catching
        # its type still does; the attempts ride along on it.
        mark_gave_up(
            exc,
            GaveUp(self.name, attempts, "deadline" if why == "deadline" else "attempts"),
            detail,
        )
        raise exc

    def _start_attempt(
        self, attempt: int, overall: Deadline | None, last: Exception | None
    ) -> Deadline | None:
        """The attempt's deadline; give up (or raise DeadlineExceeded) if no time is left."""
        deadline = self._attempt_deadline(overall)
        if deadline is not None and deadline.expired:
            if last is not None:
                self._give_up(last, classify(last), attempt - 1, "deadline", left=0.0, delay=0.0)
            raise DeadlineExceeded(f"{self.name}: the deadline expired before the call started")
        return deadline

    def _acquire(self, attempt: int, last: Exception | None) -> Permit | None:
        breaker = self.breaker
        if breaker is None:
            return None
        try:
            return breaker.acquire_permission()
        except CircuitOpen as rejected:
            if last is not None:  # another caller's failures opened it while we waited
                GIVE_UPS.labels(self.name, "circuit_open").inc()
                raise rejected from last
            raise

    def _limit_sync(self) -> None:
        limiter = self.rate_limiter
        if isinstance(limiter, RateLimiter):
            limiter.try_acquire()
        elif limiter is not None and not limiter.try_acquire():
            raise _reject(self.name, limiter.wait_time(), 0.0, self.events)

    # -- calls ---------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` under this policy (synchronously).

        ``fn`` should bound its own blocking with
        :func:`~stalwart.resilience.effective_timeout` (Python cannot interrupt
        a running sync function); waits between attempts use ``sync_sleep``.
        """
        clock = self.clock
        overall = self._overall_deadline()
        attempt = 0
        last: Exception | None = None
        while True:
            attempt += 1
            deadline = self._start_attempt(attempt, overall, last)
            if self.rate_limiter is not None:
                self._limit_sync()
            permit = self._acquire(attempt, last)
            token = _CURRENT.set(deadline)
            started = clock.monotonic()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                duration = clock.monotonic() - started
                _CURRENT.reset(token)
                last = exc
                self._sync_sleep(self._failed(exc, attempt, duration, permit, overall))
                continue
            except BaseException:
                _CURRENT.reset(token)
                if permit is not None and self.breaker is not None:
                    self.breaker.on_ignored(permit)
                raise
            duration = clock.monotonic() - started
            _CURRENT.reset(token)
            if permit is not None and self.breaker is not None:
                self.breaker.on_success(permit, duration)
            self._duration.observe(duration)
            return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` under this policy.

        Each attempt is cancelled at its deadline and raises ``DeadlineExceeded``.
        """
        clock = self.clock
        overall = self._overall_deadline()
        attempt = 0
        last: Exception | None = None
        while True:
            attempt += 1
            deadline = self._start_attempt(attempt, overall, last)
            token = _CURRENT.set(deadline)
            try:
                limiter = self.rate_limiter
                if limiter is not None:
                    await limiter.acquire()
                permit = self._acquire(attempt, last)
            except BaseException:
                _CURRENT.reset(token)
                raise
            started = clock.monotonic()
            try:
                if deadline is None:
                    result = await fn(*args, **kwargs)
                else:
                    timer = asyncio.timeout(deadline.remaining())
                    try:
                        async with timer:
                            result = await fn(*args, **kwargs)
                    except TimeoutError as exc:
                        if not timer.expired():
                            raise
                        raise DeadlineExceeded(
                            f"{self.name}: attempt {attempt} did not finish within its deadline"
                        ) from exc
            except Exception as exc:
                duration = clock.monotonic() - started
                _CURRENT.reset(token)
                last = exc
                await clock.sleep(self._failed(exc, attempt, duration, permit, overall))
                continue
            except BaseException:
                _CURRENT.reset(token)
                if permit is not None and self.breaker is not None:
                    self.breaker.on_ignored(permit)
                raise
            duration = clock.monotonic() - started
            _CURRENT.reset(token)
            if permit is not None and self.breaker is not None:
                self.breaker.on_success(permit, duration)
            self._duration.observe(duration)
            return result

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function so every call goes through this policy."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(fn, *args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.call(fn, *args, **kwargs)

        return cast(Callable[P, Any], wrapper)
