"""Circuit breakers with resilience4j's failure-rate semantics.

Most Python breakers open after N *consecutive* failures, so one success among
many failures keeps a dying dependency "healthy". This one follows
resilience4j: it measures the **failure rate** and the **slow-call rate** over a
sliding window of recent calls, and only once the window holds at least
``minimum_calls`` outcomes.

State machine::

                 failure rate >= failure_rate_threshold
                 or slow-call rate >= slow_call_rate_threshold
                 (evaluated only once the window holds >= minimum_calls)
        ┌────────┐ ───────────────────────────────────────────▶ ┌──────┐
        │ CLOSED │                                              │ OPEN │ rejects every call at
        └────────┘ ◀───────┐                 ┌───────────────── └──────┘ once with CircuitOpen
             ▲             │                 │ any trial fails;     │
             │             │                 │ or, when all trials  │ wait_duration_in_open
             │  all permitted trial calls    │ are done, slow-call  │ has passed (checked on
             │  succeeded (and slow-call     │ rate >= threshold    │ the next call or state read)
             │  rate < threshold)            │                      ▼
             │                           ┌───────────┐◀─────────────┘
             └───────────────────────────│ HALF_OPEN │ lets exactly permitted_calls_in_half_open
                                         └───────────┘ trial calls through; others: CircuitOpen

Rules, precisely:

- *Outcomes.* A call ends as a **success**, a **failure** (a retryable error:
  the dependency's fault), or **ignored** (a permanent error such as a 400 — the
  caller's fault — or a cancellation). Ignored calls do not enter the window;
  in half-open they give their trial permit back. A call is **slow** when it
  took at least ``slow_call_duration`` seconds, whether it succeeded or failed.
- *Rates.* ``failure rate = failures / calls * 100`` and ``slow-call rate =
  slow calls / calls * 100`` over the window. A rate trips the breaker when it
  is **>=** its threshold (resilience4j's edge), and only when ``calls >=
  minimum_calls``.
- *Windows.* ``sliding_window="count"``: the last ``window_size`` calls.
  ``sliding_window="time"``: calls in the last ``window_size`` seconds, kept in
  20 buckets (so a call leaves the window within 5 % of ``window_size`` after
  it ages out).
- *Half-open.* Exactly ``permitted_calls_in_half_open`` trial calls are let
  through (in total, not concurrently); any other call is rejected. The first
  failed trial reopens at once; when every permit has ended in success the
  slow-call rate of the trials is checked and the breaker closes (or reopens).
- *Transitions* reset the window, so a closed breaker starts measuring afresh.
- *Stale outcomes.* Each state period has a generation number carried by the
  :data:`Permit`; an outcome whose permit was issued before the latest
  transition is dropped, so a slow call admitted while closed cannot decide a
  half-open trial.
- *Concurrency.* All state lives behind one :class:`threading.Lock`, held only
  for a few arithmetic steps and never across an ``await``, so one breaker is
  safe from many threads and many asyncio tasks at once. Transition events are
  emitted under the (re-entrant) lock, so subscribers see them in order;
  rejection events after it is released.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Literal, NewType, ParamSpec, TypeVar

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import CircuitOpen, ConfigError
from stalwart.observe import EventBus
from stalwart.resilience._classify import classify
from stalwart.resilience._metrics import BREAKER_STATE, BREAKER_TRANSITIONS, REJECTIONS, emit

__all__ = [
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Permit",
    "BREAKERS",
]

P = ParamSpec("P")
T = TypeVar("T")

Permit = NewType("Permit", int)
"""Proof that :meth:`CircuitBreaker.acquire_permission` let a call through.

Hand it back with the call's outcome (``on_success``/``on_failure``/``on_ignored``)."""

_TIME_BUCKETS = 20


class BreakerState(enum.Enum):
    """The three states; ``value`` is the ``stalwart_breaker_state`` gauge value."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        """Lower-case name used in logs and metric labels (``half_open``)."""
        return self.name.lower()


def _check_number(name: str, value: float, low: float, high: float, *, low_open: bool) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"breaker.{name} must be a finite number, got {value!r}")
    if (value <= low if low_open else value < low) or value > high:
        bracket = "(" if low_open else "["
        raise ConfigError(f"breaker.{name} = {value!r} must be in {bracket}{low:g}, {high:g}]")


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Settings of one circuit breaker (resilience4j names and meanings; see the module doc).

    failure_rate_threshold
        Percent of failed calls in the window at or above which the breaker opens (50).
    slow_call_rate_threshold
        Percent of slow calls at or above which it opens (100: only if every call is slow).
    slow_call_duration
        Seconds at or above which a call counts as slow (60).
    sliding_window
        ``"count"`` (last ``window_size`` calls) or ``"time"`` (last ``window_size`` seconds).
    window_size
        Calls (count window, an integer) or seconds (time window). Default 20.
    minimum_calls
        Outcomes the window must hold before rates are evaluated (10).
    wait_duration_in_open
        Seconds an open breaker rejects calls before letting trials through (30).
    permitted_calls_in_half_open
        Trial calls allowed in half-open (3).
    """

    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    slow_call_duration: float = 60.0
    sliding_window: Literal["count", "time"] = "count"
    window_size: float = 20
    minimum_calls: int = 10
    wait_duration_in_open: float = 30.0
    permitted_calls_in_half_open: int = 3

    def __post_init__(self) -> None:
        _check_number("failure_rate_threshold", self.failure_rate_threshold, 0, 100, low_open=True)
        _check_number(
            "slow_call_rate_threshold", self.slow_call_rate_threshold, 0, 100, low_open=True
        )
        _check_number("slow_call_duration", self.slow_call_duration, 0, 86_400, low_open=True)
        _check_number("wait_duration_in_open", self.wait_duration_in_open, 0, 86_400, low_open=True)
        if self.sliding_window not in ("count", "time"):
            raise ConfigError(
                f"breaker.sliding_window = {self.sliding_window!r} must be 'count' or 'time'"
            )
        _check_number("window_size", self.window_size, 0, 1_000_000, low_open=True)
        for name in ("minimum_calls", "permitted_calls_in_half_open"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"breaker.{name} = {value!r} must be an integer >= 1")
        if self.sliding_window == "count":
            if self.window_size != int(self.window_size):
                raise ConfigError(
                    f"breaker.window_size = {self.window_size!r} must be a whole number of calls "
                    "for a count window"
                )
            if self.minimum_calls > self.window_size:
                raise ConfigError(
                    f"breaker.minimum_calls = {self.minimum_calls} exceeds window_size = "
                    f"{int(self.window_size)}: the breaker could never open; lower minimum_calls "
                    "or enlarge the window"
                )


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A consistent view of one breaker, for dashboards and tests.

    Rates are percentages, or ``None`` while the window holds fewer than
    ``minimum_calls`` outcomes.
    """

    name: str
    state: BreakerState
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float | None
    slow_call_rate: float | None
    open_for: float | None
    """Seconds until an open breaker lets trials through (``None`` unless open)."""


class _CountWindow:
    """The last ``size`` outcomes in a ring, with running totals (O(1) per call)."""

    __slots__ = ("_codes", "_next", "calls", "failures", "slow")

    def __init__(self, size: int) -> None:
        self._codes: list[int] = [-1] * size  # bit 1: failure, bit 2: slow; -1: empty
        self._next = 0
        self.calls = self.failures = self.slow = 0

    def record(self, failure: bool, slow: bool, now: float) -> None:
        old = self._codes[self._next]
        if old >= 0:
            self.calls -= 1
            self.failures -= old & 1
            self.slow -= (old >> 1) & 1
        self._codes[self._next] = int(failure) | (int(slow) << 1)
        self._next = (self._next + 1) % len(self._codes)
        self.calls += 1
        self.failures += failure
        self.slow += slow

    def expire(self, now: float) -> None:
        return None


class _TimeWindow:
    """Outcomes of the last ``duration`` seconds in ``_TIME_BUCKETS`` buckets, with totals."""

    __slots__ = ("_buckets", "_epoch", "_width", "calls", "failures", "slow")

    def __init__(self, duration: float, now: float) -> None:
        self._width = duration / _TIME_BUCKETS
        self._buckets = [[0, 0, 0] for _ in range(_TIME_BUCKETS)]  # calls, failures, slow
        self._epoch = math.floor(now / self._width)
        self.calls = self.failures = self.slow = 0

    def expire(self, now: float) -> None:
        epoch = math.floor(now / self._width)
        if epoch <= self._epoch:
            return
        for step in range(self._epoch + 1, min(epoch, self._epoch + _TIME_BUCKETS) + 1):
            bucket = self._buckets[step % _TIME_BUCKETS]
            self.calls -= bucket[0]
            self.failures -= bucket[1]
            self.slow -= bucket[2]
            bucket[0] = bucket[1] = bucket[2] = 0
        self._epoch = epoch

    def record(self, failure: bool, slow: bool, now: float) -> None:
        self.expire(now)
        bucket = self._buckets[self._epoch % _TIME_BUCKETS]
        bucket[0] += 1
        bucket[1] += failure
        bucket[2] += slow
        self.calls += 1
        self.failures += failure
        self.slow += slow


class CircuitBreaker:
    """One dependency's circuit breaker (see the module docstring for the state machine).

    Low-level use, when the caller classifies outcomes itself::

        permit = breaker.acquire_permission()          # CircuitOpen if the call must not be made
        started = clock.monotonic()
        try:
            result = do_call()
        except Exception as exc:
            breaker.on_error(permit, clock.monotonic() - started, exc)
            raise
        breaker.on_success(permit, clock.monotonic() - started)

    or simply ``breaker.call(fn, ...)`` / ``await breaker.acall(fn, ...)``.
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: EventBus | None = None,
    ) -> None:
        if not name:
            raise ConfigError("a circuit breaker needs a dependency name")
        self.name = name
        self.config = config if config is not None else BreakerConfig()
        self.clock = clock
        self.events = events
        self._lock = threading.RLock()
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._open_until = 0.0  # clock instant at which an open breaker lets trials in
        self._trials_issued = 0
        self._trials_ok = 0
        self._trials_slow = 0
        self._window: _CountWindow | _TimeWindow = self._new_window()
        self._state_gauge = BREAKER_STATE.labels(name)
        self._rejected = REJECTIONS.labels(name, "circuit_open")
        self._state_gauge.set(BreakerState.CLOSED.value)

    # -- state -------------------------------------------------------------------------

    def _new_window(self) -> _CountWindow | _TimeWindow:
        if self.config.sliding_window == "count":
            return _CountWindow(int(self.config.window_size))
        return _TimeWindow(self.config.window_size, self.clock.monotonic())

    def _move(self, to: BreakerState, error_class: str | None = None) -> None:
        """Change state (lock held): new generation, fresh window, metrics and event.

        The event is emitted while the lock is held so that subscribers see
        transitions in the order they happened (the lock is re-entrant, so a
        subscriber may read this breaker).
        """
        window = self._window
        failure_rate, slow_rate = self._rates(window) if window.calls else (None, None)
        old = self._state
        self._state = to
        self._generation += 1
        self._window = self._new_window()
        self._trials_issued = self._trials_ok = self._trials_slow = 0
        if to is BreakerState.OPEN:
            self._open_until = self.clock.monotonic() + self.config.wait_duration_in_open
        self._state_gauge.set(to.value)
        BREAKER_TRANSITIONS.labels(self.name, old.label, to.label).inc()
        emit(
            self.events,
            "warning" if to is BreakerState.OPEN else "info",
            "breaker_transition",
            dependency=self.name,
            from_state=old.label,
            to_state=to.label,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
            error_class=error_class,
        )

    def _rates(self, window: _CountWindow | _TimeWindow) -> tuple[float, float]:
        return window.failures * 100.0 / window.calls, window.slow * 100.0 / window.calls

    def _maybe_half_open(self, now: float) -> None:
        # One stored instant, compared as is: "now - opened >= wait" and "opened + wait - now"
        # can disagree in the last bit of a float, leaving a breaker open with 0 s to wait.
        if self._state is BreakerState.OPEN and now >= self._open_until:
            self._move(BreakerState.HALF_OPEN)

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose wait has passed reads as half-open)."""
        if self._state is BreakerState.OPEN:
            with self._lock:
                self._maybe_half_open(self.clock.monotonic())
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        """Counts and rates of the current window, taken atomically."""
        with self._lock:
            now = self.clock.monotonic()
            self._maybe_half_open(now)
            window = self._window
            window.expire(now)
            rates: tuple[float | None, float | None] = (None, None)
            if window.calls >= self.config.minimum_calls:
                rates = self._rates(window)
            open_for = None
            if self._state is BreakerState.OPEN:
                open_for = max(0.0, self._open_until - now)
            snap = BreakerSnapshot(
                self.name,
                self._state,
                window.calls,
                window.failures,
                window.slow,
                rates[0],
                rates[1],
                open_for,
            )
        return snap

    def reset(self) -> None:
        """Force the breaker closed with an empty window (an operator's manual override)."""
        with self._lock:
            if self._state is not BreakerState.CLOSED:
                self._move(BreakerState.CLOSED)
            else:
                self._window = self._new_window()

    # -- calls -------------------------------------------------------------------------

    def acquire_permission(self) -> Permit:
        """Ask to make one call: a :data:`Permit`, or :class:`CircuitOpen` at once.

        Every permit must be handed back with exactly one of :meth:`on_success`,
        :meth:`on_failure`, :meth:`on_ignored` or :meth:`on_error`.
        """
        with self._lock:
            state = self._state
            if state is BreakerState.CLOSED:
                return Permit(self._generation)
            now = self.clock.monotonic()
            if state is BreakerState.OPEN:
                self._maybe_half_open(now)
                state = self._state
            permit: Permit | None = None
            if (
                state is BreakerState.HALF_OPEN
                and self._trials_issued < self.config.permitted_calls_in_half_open
            ):
                self._trials_issued += 1
                permit = Permit(self._generation)
            open_for = max(0.0, self._open_until - now) if state is BreakerState.OPEN else None
        if permit is not None:
            return permit
        self._rejected.inc()
        emit(
            self.events,
            "info",
            "dependency_rejected",
            dependency=self.name,
            reason="circuit_open",
            state=state.label,
            error_class=CircuitOpen.retryable + "/" + CircuitOpen.scope,
        )
        if open_for is not None:
            detail = f"open; trial calls allowed in {open_for:.3g} s"
        else:
            detail = "half-open; all trial calls are in flight"
        raise CircuitOpen(
            f"circuit breaker {self.name!r} is {detail}; call rejected without being made",
            dependency=self.name,
        )

    def on_success(self, permit: Permit, duration: float) -> None:
        """The permitted call succeeded after ``duration`` seconds."""
        self._record(permit, duration, failure=False)

    def on_failure(self, permit: Permit, duration: float, error_class: str | None = None) -> None:
        """The permitted call failed because of the dependency (a retryable error).

        ``error_class`` (e.g. ``"retryable/systemic"``) is reported on the
        transition event if this failure opens the breaker.
        """
        self._record(permit, duration, failure=True, error_class=error_class)

    def on_ignored(self, permit: Permit) -> None:
        """The call's outcome says nothing about the dependency (permanent error, cancelled)."""
        with self._lock:
            if (
                permit == self._generation
                and self._state is BreakerState.HALF_OPEN
                and self._trials_issued > 0
            ):
                self._trials_issued -= 1

    def on_error(self, permit: Permit, duration: float, exc: BaseException) -> None:
        """Classify ``exc`` and record a failure (retryable) or ignore it (permanent)."""
        if not isinstance(exc, Exception):
            self.on_ignored(permit)
            return
        cls = classify(exc)
        if cls.retryable:
            self.on_failure(permit, duration, cls.label)
        else:
            self.on_ignored(permit)

    def _record(
        self, permit: Permit, duration: float, *, failure: bool, error_class: str | None = None
    ) -> None:
        config = self.config
        slow = duration >= config.slow_call_duration
        with self._lock:
            if permit != self._generation:
                return  # issued before the latest transition: says nothing about this period
            state = self._state
            if state is BreakerState.CLOSED:
                window = self._window
                now = self.clock.monotonic() if config.sliding_window == "time" else 0.0
                window.record(failure, slow, now)
                if (failure or slow) and window.calls >= config.minimum_calls:
                    failure_rate, slow_rate = self._rates(window)
                    if (
                        failure_rate >= config.failure_rate_threshold
                        or slow_rate >= config.slow_call_rate_threshold
                    ):
                        self._move(BreakerState.OPEN, error_class)
            elif state is BreakerState.HALF_OPEN:
                if failure:
                    self._move(BreakerState.OPEN, error_class)
                else:
                    self._trials_ok += 1
                    self._trials_slow += slow
                    permitted = config.permitted_calls_in_half_open
                    if self._trials_ok >= permitted:
                        slow_rate = self._trials_slow * 100.0 / self._trials_ok
                        to = (
                            BreakerState.OPEN
                            if slow_rate >= config.slow_call_rate_threshold
                            else BreakerState.CLOSED
                        )
                        self._move(to)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` through the breaker (no retry, no deadline: see :class:`Policy`)."""
        permit = self.acquire_permission()
        started = self.clock.monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self.on_error(permit, self.clock.monotonic() - started, exc)
            raise
        self.on_success(permit, self.clock.monotonic() - started)
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn`` through the breaker (no retry, no deadline: see :class:`Policy`)."""
        permit = self.acquire_permission()
        started = self.clock.monotonic()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.on_error(permit, self.clock.monotonic() - started, exc)
            raise
        self.on_success(permit, self.clock.monotonic() - started)
        return result

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.label})"


class BreakerRegistry:
    """Circuit breakers by dependency name: one breaker per dependency, shared by every caller.

    :meth:`get` creates a breaker on first use; asking again with a *different*
    config is a :class:`ConfigError` (two callers disagreeing about one
    dependency is a bug, not something to settle silently).
    """

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, events: EventBus | None = None) -> None:
        self.clock = clock
        self.events = events
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock | None = None,
        events: EventBus | None = None,
    ) -> CircuitBreaker:
        """The breaker for ``name``, created with ``config`` (default settings) if new.

        ``clock`` and ``events`` override the registry's for a newly created
        breaker only.
        """
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(
                    name,
                    config,
                    clock=clock if clock is not None else self.clock,
                    events=events if events is not None else self.events,
                )
                self._breakers[name] = breaker
            elif config is not None and config != breaker.config:
                raise ConfigError(
                    f"circuit breaker {name!r} already exists with {breaker.config}; "
                    f"refusing a different config {config}"
                )
            return breaker

    def remove(self, name: str) -> None:
        """Forget the breaker for ``name`` (no error if unknown)."""
        with self._lock:
            self._breakers.pop(name, None)

    def refresh(self) -> None:
        """Move every open breaker whose wait has passed to half-open.

        A breaker changes state only when something looks at it; one no call reaches
        (a fallback serving while the primary is open) would read "open" forever.
        Cheaper than :meth:`snapshot`: only open breakers take their lock."""
        for breaker in self:
            _ = breaker.state

    def snapshot(self) -> dict[str, BreakerSnapshot]:
        """A snapshot of every breaker, by name."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.name: b.snapshot() for b in breakers}

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[CircuitBreaker]:
        with self._lock:
            return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)


BREAKERS = BreakerRegistry()
"""The process-wide registry :class:`Policy` uses unless given another."""
