"""Token-bucket rate limiting: requests and tokens per interval, wait-or-reject.

A :class:`TokenBucket` holds up to ``capacity`` units and refills at
``rate / per`` units per second. Waiting is done by *reservation*: a caller
that must wait takes its units at once (the balance may go negative) and then
sleeps until the refill covers them. Later callers therefore queue behind
earlier ones in arrival order (no thundering herd, no starvation), and the wait
each caller faces is known before it starts waiting — so a caller whose wait
would exceed its limit (``max_wait`` or the enclosing deadline) is rejected at
once with :class:`~stalwart.errors.RateLimited`, carrying ``retry_after``, and
takes nothing.

:class:`RateLimiter` combines a requests bucket and a (model) tokens bucket and
takes from both atomically.
"""

from __future__ import annotations

import math
import threading

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ConfigError, RateLimited
from stalwart.observe import EventBus
from stalwart.resilience._deadline import current_deadline
from stalwart.resilience._metrics import REJECTIONS, emit

__all__ = ["RateLimiter", "TokenBucket"]


def _positive(name: str, value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"rate_limit.{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ConfigError(f"rate_limit.{name} = {value!r} must be > 0")


class TokenBucket:
    """``rate`` units per ``per`` seconds, bursting up to ``capacity`` (default ``rate``).

    Starts full. Thread- and asyncio-safe: the balance is guarded by a lock
    held for a few arithmetic steps; waiting happens outside it on ``clock``.
    """

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        capacity: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "rate_limit",
    ) -> None:
        _positive("rate", rate)
        _positive("per", per)
        self.capacity = float(rate if capacity is None else capacity)
        _positive("capacity", self.capacity)
        self.rate = float(rate)
        self.per = float(per)
        self.name = name
        self.clock = clock
        self._per_second = self.rate / self.per
        self._lock = threading.Lock()
        self._balance = self.capacity
        self._updated = clock.monotonic()

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._balance = min(
                self.capacity, self._balance + (now - self._updated) * self._per_second
            )
            self._updated = now

    def _check_amount(self, amount: float) -> None:
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"{self.name}: amount must be a finite number >= 0, got {amount!r}")
        if amount > self.capacity:
            raise ValueError(
                f"{self.name}: asked for {amount:g} units but the bucket holds at most "
                f"{self.capacity:g}; it could never be granted"
            )

    def wait_time(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` units could be taken (0.0 if now), without taking them."""
        with self._lock:
            self._refill(self.clock.monotonic())
            return self._wait_locked(amount)

    def _wait_locked(self, amount: float) -> float:
        missing = amount - self._balance
        return missing / self._per_second if missing > 0 else 0.0

    @property
    def available(self) -> float:
        """Units that could be taken now (negative while reservations are outstanding)."""
        with self._lock:
            self._refill(self.clock.monotonic())
            return self._balance

    def try_acquire(self, amount: float = 1.0) -> bool:
        """Take ``amount`` units if they are there now; never waits."""
        self._check_amount(amount)
        with self._lock:
            self._refill(self.clock.monotonic())
            if self._balance >= amount:
                self._balance -= amount
                return True
            return False

    def debit(self, amount: float) -> None:
        """Take ``amount`` units unconditionally (the balance may go negative).

        For costs known only afterwards, e.g. the tokens a model call really
        used: later callers wait for the debt to be refilled.
        """
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"{self.name}: amount must be a finite number >= 0, got {amount!r}")
        with self._lock:
            self._refill(self.clock.monotonic())
            self._balance -= amount

    def _refund(self, amount: float) -> None:
        with self._lock:
            self._refill(self.clock.monotonic())
            self._balance = min(self.capacity, self._balance + amount)

    async def acquire(self, amount: float = 1.0, *, max_wait: float | None = None) -> None:
        """Take ``amount`` units, waiting for them if needed; or raise :class:`RateLimited`.

        The allowed wait is the smaller of ``max_wait`` and the enclosing
        deadline's remaining time; ``max_wait=0`` never waits (reject mode). A
        rejected caller takes nothing; ``RateLimited.retry_after`` says when it
        could succeed. If the waiting task is cancelled its units are returned.
        """
        self._check_amount(amount)
        allowed = _allowed_wait(max_wait)
        with self._lock:
            self._refill(self.clock.monotonic())
            wait = self._wait_locked(amount)
            if wait <= allowed:
                self._balance -= amount
        if wait > allowed:
            raise _reject(self.name, wait, allowed, None)
        if wait > 0:
            try:
                await self.clock.sleep(wait)
            except BaseException:
                self._refund(amount)
                raise


def _allowed_wait(max_wait: float | None) -> float:
    allowed = math.inf if max_wait is None else max_wait
    deadline = current_deadline()
    if deadline is not None:
        left = deadline.remaining()
        allowed = left if left < allowed else allowed
    return allowed


def _reject(name: str, wait: float, allowed: float, events: EventBus | None) -> RateLimited:
    REJECTIONS.labels(name, "rate_limited").inc()
    emit(
        events,
        "info",
        "dependency_rejected",
        dependency=name,
        reason="rate_limited",
        retry_after=round(wait, 3),
        error_class=RateLimited.retryable + "/" + RateLimited.scope,
    )
    return RateLimited(
        f"rate limit {name!r}: a slot frees in {wait:.3g} s, more than the {allowed:.3g} s "
        "this call may wait",
        dependency=name,
        retry_after=wait,
    )


class RateLimiter:
    """Requests and (model) tokens per interval, taken together.

    ``requests`` requests and ``tokens`` tokens per ``per`` seconds (either may
    be ``None`` for no limit on that axis). Each call takes one request and
    the given number of tokens from both buckets atomically.
    """

    def __init__(
        self,
        name: str,
        *,
        requests: float | None = None,
        tokens: float | None = None,
        per: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
        events: EventBus | None = None,
    ) -> None:
        if requests is None and tokens is None:
            raise ConfigError(f"rate limiter {name!r} needs requests= or tokens=")
        self.name = name
        self.clock = clock
        self.events = events
        self.requests = (
            TokenBucket(requests, per, clock=clock, name=f"{name}.requests")
            if requests is not None
            else None
        )
        self.tokens = (
            TokenBucket(tokens, per, clock=clock, name=f"{name}.tokens")
            if tokens is not None
            else None
        )
        self._lock = threading.Lock()

    def _buckets(self, tokens: float) -> list[tuple[TokenBucket, float]]:
        pairs: list[tuple[TokenBucket, float]] = []
        if self.requests is not None:
            self.requests._check_amount(1.0)
            pairs.append((self.requests, 1.0))
        if self.tokens is not None and tokens > 0:
            self.tokens._check_amount(tokens)
            pairs.append((self.tokens, tokens))
        return pairs

    def _reserve(self, tokens: float, allowed: float) -> float:
        """Reserve from every bucket if the longest wait is allowed; returns that wait."""
        pairs = self._buckets(tokens)
        now = self.clock.monotonic()
        with self._lock:
            wait = 0.0
            for bucket, amount in pairs:
                with bucket._lock:
                    bucket._refill(now)
                    wait = max(wait, bucket._wait_locked(amount))
            if wait > allowed:
                raise _reject(self.name, wait, allowed, self.events)
            for bucket, amount in pairs:
                with bucket._lock:
                    bucket._balance -= amount
        return wait

    def try_acquire(self, tokens: float = 0.0) -> None:
        """Take one request and ``tokens`` now, or raise :class:`RateLimited` (never waits)."""
        self._reserve(tokens, 0.0)

    async def acquire(self, tokens: float = 0.0, *, max_wait: float | None = None) -> None:
        """Take one request and ``tokens``, waiting up to ``max_wait`` / the deadline.

        Raises :class:`RateLimited` at once (taking nothing) when the wait
        would be longer than allowed.
        """
        wait = self._reserve(tokens, _allowed_wait(max_wait))
        if wait > 0:
            try:
                await self.clock.sleep(wait)
            except BaseException:
                for bucket, amount in self._buckets(tokens):
                    bucket._refund(amount)
                raise

    def debit_tokens(self, tokens: float) -> None:
        """Charge tokens known only after the call (see :meth:`TokenBucket.debit`)."""
        if self.tokens is not None:
            self.tokens.debit(tokens)
