"""Retry settings: exponential backoff with full jitter, bounded by attempts and a deadline.

Why not tenacity: it was evaluated and does not fit three requirements here.
(1) Time must come from the injected :class:`~stalwart.clock.Clock` so tests
never sleep; tenacity's ``RetryCallState`` reads :func:`time.monotonic`
directly for its start time and outcome timestamps. (2) Each attempt must run
inside its own propagated :class:`~stalwart.resilience.Deadline` (min of the
kind's timeout and what the overall deadline has left), give up *before*
sleeping when the next attempt could not start in time, and feed the same
classification to the breaker and the metrics; in tenacity these become five
interlocking callbacks around state it owns. (3) Cost: a successful call
through a bare ``tenacity.Retrying`` costs about 11 µs on our CI machine,
over half the 20 µs budget for the whole policy stack. The loop in
:mod:`stalwart.resilience._policy` is about 60 lines and measured by
``bench/resilience.py``.
"""

from __future__ import annotations

import dataclasses
import math
import random
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from stalwart.errors import ConfigError

if TYPE_CHECKING:
    from stalwart.resilience._policy import Policy

__all__ = ["GaveUp", "RetryPolicy", "gave_up"]

P = ParamSpec("P")
T = TypeVar("T")


def _finite(name: str, value: float, *, minimum: float, strict: bool) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"retry.{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ConfigError(f"retry.{name} = {value!r} must be {'>' if strict else '>='} {minimum:g}")


_GAVE_UP_ATTR = "stalwart_gave_up"


@dataclasses.dataclass(frozen=True, slots=True)
class GaveUp:
    """What a policy attached to the error it re-raised after its last attempt.

    dependency
        The policy's name.
    attempts
        Attempts made, the last one included.
    reason
        ``"attempts"`` (``max_attempts`` used up) or ``"deadline"`` (the next
        attempt could not start before the deadline).
    """

    dependency: str
    attempts: int
    reason: Literal["attempts", "deadline"]


def gave_up(exc: BaseException) -> GaveUp | None:
    """The :class:`GaveUp` record of an error a policy re-raised after retrying, else ``None``.

    ``None`` also for an error raised after one attempt because it is permanent.
    A :class:`~stalwart.errors.RetriesExhausted` (``on_exhausted="wrap"``)
    carries the same facts as attributes.
    """
    record = exc.__dict__.get(_GAVE_UP_ATTR)
    return record if isinstance(record, GaveUp) else None


def mark_gave_up(exc: BaseException, record: GaveUp, detail: str) -> None:
    """Attach ``record`` to ``exc`` and add a note (shown under its traceback)."""
    exc.__dict__[_GAVE_UP_ATTR] = record
    exc.add_note(
        f"stalwart: {record.dependency}: gave up after {record.attempts} attempt(s): {detail}"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to wait before trying a failed call again.

    Only errors classified *retryable* are retried (see
    :func:`~stalwart.resilience.classify`); a permanent error (400, 401, 403…)
    is raised after exactly one attempt.

    max_attempts
        Total attempts including the first (default 4). 1 disables retrying.
    base
        Upper bound of the first backoff, in seconds (default 0.1).
    multiplier
        Growth of the bound per retry (default 2.0): retry ``n`` (1-based)
        waits at most ``min(cap, base * multiplier ** (n - 1))``.
    cap
        Largest wait between attempts, in seconds (default 10.0). Also caps a
        server's ``Retry-After``. A cap below ``base`` is kept, with a warning:
        every wait is then at most ``cap``.
    deadline
        Seconds for the whole call, attempts and waits included (default
        ``None``: bounded by ``max_attempts``, each attempt's timeout and any
        enclosing deadline). No attempt starts, and no wait begins, that would
        end past it.
    jitter
        Full jitter (default True): the wait is uniform in ``[0, bound]``, which
        spreads retrying clients apart. False waits exactly ``bound``.
    respect_retry_after
        Wait what the dependency asks (``retry-after-ms``, else ``Retry-After``;
        up to ``cap``) instead of the backoff (default True). A request to wait
        0 s is ignored, as the OpenAI and Anthropic SDKs do: the backoff applies.
    on_exhausted
        What a call raises after its last attempt (default ``"reraise"``): the
        last attempt's own error, as stamina does, with a :class:`GaveUp`
        record (:func:`gave_up`) and a note attached; ``"wrap"`` raises
        :class:`~stalwart.errors.RetriesExhausted` from it instead (the
        behaviour before issue 18).
    rng
        Random source for the jitter (default: the ``random`` module).
    """

    max_attempts: int = 4
    base: float = 0.1
    multiplier: float = 2.0
    cap: float = 10.0
    deadline: float | None = None
    jitter: bool = True
    respect_retry_after: bool = True
    on_exhausted: Literal["reraise", "wrap"] = "reraise"
    rng: random.Random | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or not 1 <= self.max_attempts <= 1000
        ):
            raise ConfigError(
                f"retry.max_attempts = {self.max_attempts!r} must be an int in 1..1000"
            )
        _finite("base", self.base, minimum=0.0, strict=True)
        _finite("multiplier", self.multiplier, minimum=1.0, strict=False)
        _finite("cap", self.cap, minimum=0.0, strict=True)
        if self.cap < self.base:
            warnings.warn(
                f"retry.cap = {self.cap!r} is below retry.base = {self.base!r}: every wait "
                f"between attempts will be {self.cap!r} s at most (raise cap or lower base "
                "to silence this)",
                stacklevel=3,
            )
        if self.on_exhausted not in ("reraise", "wrap"):
            raise ConfigError(
                f"retry.on_exhausted = {self.on_exhausted!r} must be 'reraise' or 'wrap'"
            )
        if self.deadline is not None:
            _finite("deadline", self.deadline, minimum=0.0, strict=True)

    def backoff_bound(self, retry: int) -> float:
        """The largest wait before retry number ``retry`` (1 = the first retry)."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        try:
            raw = self.base * self.multiplier ** (retry - 1)
        except OverflowError:
            return self.cap
        return raw if raw < self.cap else self.cap

    def delay(self, retry: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry``.

        ``min(retry_after, cap)`` when the dependency asked for a wait above 0
        (and ``respect_retry_after``); otherwise full jitter over
        :meth:`backoff_bound`.
        """
        if retry_after is not None and retry_after > 0 and self.respect_retry_after:
            return retry_after if retry_after < self.cap else self.cap
        bound = self.backoff_bound(retry)
        if not self.jitter:
            return bound
        rand = self.rng.random() if self.rng is not None else random.random()
        return bound * rand

    # -- convenience: a retry-only policy named after the function -----------------------

    def _policy(self, fn: Callable[..., Any]) -> Policy:
        from stalwart.resilience._policy import Policy

        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        return Policy(name, retry=self, breaker=None, _allow_unbounded=True)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` with retries (no breaker); the dependency label is ``fn``'s name.

        For a named dependency with a breaker and a timeout, use
        :class:`~stalwart.resilience.Policy`.
        """
        return self._policy(fn).call(fn, *args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn`` with retries (no breaker); see :meth:`call`."""
        return await self._policy(fn).acall(fn, *args, **kwargs)

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function so every call is retried by this policy."""
        return self._policy(fn)(fn)
