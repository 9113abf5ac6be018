"""Circuit breakers with resilience4j's CircuitBreaker semantics.

Most Python breakers open after N *consecutive* failures, so one success among
many failures keeps a dying dependency "healthy". This one follows
resilience4j: it measures the **failure rate** and the **slow-call rate** over a
sliding window of recent calls, and only once the window holds at least
``minimum_calls`` outcomes. docs/resilience.md has the transition table and
every difference from resilience4j.

State machine (the three automatic states; the operator states below)::

                 after EVERY recorded outcome, once the window holds >= minimum_calls:
                 failure rate >= failure_rate_threshold or slow rate >= slow_call_rate_threshold
        ┌────────┐ ───────────────────────────────────────────▶ ┌──────┐
        │ CLOSED │                                              │ OPEN │ rejects every call at
        └────────┘ ◀──────┐                ┌─────────────────── └──────┘ once with CircuitOpen
                          │                │ the trial window    │   ▲
                          │                │ is full and a rate  │   │ wait_duration_in_open
           the trial      │                │ >= its threshold;   │   │ has passed (checked on
           window is full │                │ or max_wait_in_half │   │ the next call or read)
           and both rates │                │ _open has passed    ▼   │
           < thresholds   │             ┌───────────┐◀─────────────┘
                          └─────────────│ HALF_OPEN │ lets permitted_calls_in_half_open
                                        └───────────┘ trial calls through; others: CircuitOpen

Operator states (resilience4j's), entered and left only by :meth:`CircuitBreaker.transition_to`
(or :meth:`BreakerRegistry.set_override`, the HTTP API and ``stalwart breaker``):
**FORCED_OPEN** rejects every call; **DISABLED** lets every call through and
records nothing; **METRICS_ONLY** lets every call through and records outcomes
(rates show in snapshots) but never changes state.

Rules, precisely:

- *Outcomes.* A call ends as a **success**, a **failure** (a retryable error:
  the dependency's fault), or **ignored** (a permanent error such as a 400 — the
  caller's fault — or a cancellation). Ignored calls do not enter the window;
  in half-open they give their trial permit back. A call is **slow** when it
  took at least ``slow_call_duration`` seconds, whether it succeeded or failed.
- *Rates.* ``failure rate = failures / calls * 100`` and ``slow-call rate =
  slow calls / calls * 100`` over the window. A rate trips the breaker when it
  is **>=** its threshold (resilience4j's edge), and only when ``calls >=
  minimum_calls``. Both are evaluated after every recorded outcome, success or
  failure: F,F,F,S,S with ``minimum_calls=5`` and a 50 % threshold opens on the
  last S.
- *Windows.* ``sliding_window="count"``: the last ``window_size`` calls.
  ``sliding_window="time"``: calls in the last ``window_size`` seconds, kept in
  20 buckets (so a call leaves the window within 5 % of ``window_size`` after
  it ages out).
- *Half-open.* Exactly ``permitted_calls_in_half_open`` trial calls are let
  through (in total, not concurrently); any other call is rejected. The trials
  form their own count window of that size with ``minimum_calls`` equal to it:
  nothing is decided until every permit has ended, then the breaker closes if
  both rates are below their thresholds and reopens otherwise (F,S,S,S with 4
  trials and a 50 % threshold closes). With ``max_wait_in_half_open > 0`` a
  half-open breaker still undecided after that many seconds reopens.
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
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Literal, NewType, ParamSpec, TypeVar

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import CircuitOpen, ConfigError
from stalwart.observe import EventBus
from stalwart.resilience._classify import classify
from stalwart.resilience._metrics import BREAKER_STATE, BREAKER_TRANSITIONS, REJECTIONS, emit
from stalwart.resilience._overrides import OVERRIDES_ENV, OverrideFile
from stalwart.resilience._window import CountWindow, TimeWindow, Window

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


class BreakerState(enum.Enum):
    """resilience4j's six states; ``value`` is the ``stalwart_breaker_state`` gauge value
    (resilience4j's own state order)."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2
    DISABLED = 3
    FORCED_OPEN = 4
    METRICS_ONLY = 5

    @classmethod
    def parse(cls, text: str) -> BreakerState:
        """The state named ``text`` (``"forced_open"``, ``"FORCED_OPEN"``, ``"forced-open"``)."""
        key = text.strip().upper().replace("-", "_")
        try:
            return cls[key]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ConfigError(f"unknown breaker state {text!r}: use one of {names}") from None

    @property
    def operator(self) -> bool:
        """True for the states only an operator enters and leaves (forced_open, disabled,
        metrics_only)."""
        return self.value >= 3

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
        Trial calls allowed in half-open, evaluated together as one window (3).
    max_wait_in_half_open
        Seconds a half-open breaker waits for its trials to end before it reopens;
        0 (the default) waits for as long as they take.
    """

    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    slow_call_duration: float = 60.0
    sliding_window: Literal["count", "time"] = "count"
    window_size: float = 20
    minimum_calls: int = 10
    wait_duration_in_open: float = 30.0
    permitted_calls_in_half_open: int = 3
    max_wait_in_half_open: float = 0.0

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
        if self.max_wait_in_half_open != 0:
            _check_number(
                "max_wait_in_half_open", self.max_wait_in_half_open, 0, 86_400, low_open=True
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
        self._half_open_until = math.inf  # instant at which an undecided half-open reopens
        self._trials_issued = 0
        self._window: Window = self._new_window(BreakerState.CLOSED)
        self._state_gauge = BREAKER_STATE.labels(name)
        self._rejected = REJECTIONS.labels(name, "circuit_open")
        self._state_gauge.set(BreakerState.CLOSED.value)

    # -- state -------------------------------------------------------------------------

    def _new_window(self, state: BreakerState) -> Window:
        config = self.config
        if state is BreakerState.HALF_OPEN:
            return CountWindow(config.permitted_calls_in_half_open)
        if config.sliding_window == "count":
            return CountWindow(int(config.window_size))
        return TimeWindow(config.window_size, self.clock.monotonic())

    def _move(self, to: BreakerState, error_class: str | None = None, cause: str = "") -> None:
        """Change state (lock held): new generation, fresh window, metrics and event.

        The event is emitted while the lock is held so that subscribers see
        transitions in the order they happened (the lock is re-entrant, so a
        subscriber may read this breaker).
        """
        window = self._window
        failure_rate, slow_rate = self._rates(window) if window.calls else (None, None)
        old = self._state
        now = self.clock.monotonic()
        self._state = to
        self._generation += 1
        self._window = self._new_window(to)
        self._trials_issued = 0
        if to is BreakerState.OPEN:
            self._open_until = now + self.config.wait_duration_in_open
        if to is BreakerState.HALF_OPEN and self.config.max_wait_in_half_open > 0:
            self._half_open_until = now + self.config.max_wait_in_half_open
        else:
            self._half_open_until = math.inf
        self._state_gauge.set(to.value)
        BREAKER_TRANSITIONS.labels(self.name, old.label, to.label).inc()
        fields: dict[str, object] = {}
        if cause:
            fields["cause"] = cause
        emit(
            self.events,
            "warning" if to in (BreakerState.OPEN, BreakerState.FORCED_OPEN) else "info",
            "breaker_transition",
            dependency=self.name,
            from_state=old.label,
            to_state=to.label,
            failure_rate=failure_rate,
            slow_call_rate=slow_rate,
            error_class=error_class,
            **fields,
        )

    def _rates(self, window: Window) -> tuple[float, float]:
        return window.failures * 100.0 / window.calls, window.slow * 100.0 / window.calls

    def _exceeded(self, window: Window) -> bool:
        failure_rate, slow_rate = self._rates(window)
        config = self.config
        return (
            failure_rate >= config.failure_rate_threshold
            or slow_rate >= config.slow_call_rate_threshold
        )

    def _tick(self, now: float) -> None:
        """Time-driven transitions (lock held): open -> half-open, undecided half-open -> open."""
        # One stored instant, compared as is: "now - opened >= wait" and "opened + wait - now"
        # can disagree in the last bit of a float, leaving a breaker open with 0 s to wait.
        if self._state is BreakerState.OPEN and now >= self._open_until:
            self._move(BreakerState.HALF_OPEN)
        elif self._state is BreakerState.HALF_OPEN and now >= self._half_open_until:
            self._move(BreakerState.OPEN, cause="max_wait_in_half_open")

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose wait has passed reads as half-open)."""
        if self._state is BreakerState.OPEN or self._state is BreakerState.HALF_OPEN:
            with self._lock:
                self._tick(self.clock.monotonic())
        return self._state

    def snapshot(self) -> BreakerSnapshot:
        """Counts and rates of the current window, taken atomically."""
        with self._lock:
            now = self.clock.monotonic()
            self._tick(now)
            window = self._window
            window.expire(now)
            minimum = (
                self.config.permitted_calls_in_half_open
                if self._state is BreakerState.HALF_OPEN
                else self.config.minimum_calls
            )
            rates: tuple[float | None, float | None] = (None, None)
            if window.calls >= minimum:
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

    def transition_to(self, state: BreakerState, *, cause: str = "operator") -> None:
        """Move to ``state`` now, whatever the window says (resilience4j's ``transitionTo*State``).

        The way into and out of the operator states (``FORCED_OPEN``, ``DISABLED``,
        ``METRICS_ONLY``); ``CLOSED``, ``OPEN`` and ``HALF_OPEN`` are allowed too
        (``OPEN`` starts a fresh ``wait_duration_in_open``). Moving to the current
        state is a no-op that keeps the window, except for ``CLOSED`` which starts
        a fresh window (as :meth:`reset`).
        """
        if not isinstance(state, BreakerState):
            raise ConfigError(f"transition_to needs a BreakerState, got {state!r}")
        with self._lock:
            if self._state is not state:
                self._move(state, cause=cause)
            elif state is BreakerState.CLOSED:
                self._window = self._new_window(state)

    def reset(self) -> None:
        """Force the breaker closed with an empty window (an operator's manual override)."""
        self.transition_to(BreakerState.CLOSED)

    # -- calls -------------------------------------------------------------------------

    def acquire_permission(self) -> Permit:
        """Ask to make one call: a :data:`Permit`, or :class:`CircuitOpen` at once.

        Every permit must be handed back with exactly one of :meth:`on_success`,
        :meth:`on_failure`, :meth:`on_ignored` or :meth:`on_error`.
        """
        with self._lock:
            state = self._state
            if state is BreakerState.CLOSED or state is BreakerState.DISABLED:
                return Permit(self._generation)
            if state is BreakerState.METRICS_ONLY:
                return Permit(self._generation)
            now = self.clock.monotonic()
            self._tick(now)
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
        if state is BreakerState.FORCED_OPEN:
            detail = "forced open by an operator (`stalwart breaker close` ends it)"
        elif open_for is not None:
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
            if state is BreakerState.CLOSED or state is BreakerState.METRICS_ONLY:
                window = self._window
                now = self.clock.monotonic() if config.sliding_window == "time" else 0.0
                window.record(failure, slow, now)
                # Evaluated on every outcome, success included (resilience4j's
                # checkIfThresholdsExceeded after onSuccess and onError alike).
                if (
                    state is BreakerState.CLOSED
                    and window.calls >= config.minimum_calls
                    and self._exceeded(window)
                ):
                    self._move(BreakerState.OPEN, error_class)
            elif state is BreakerState.HALF_OPEN:
                window = self._window
                window.record(failure, slow, 0.0)
                # The trials are one count window whose minimum is its size: decided once
                # every permitted trial has ended, as a whole.
                if window.calls >= config.permitted_calls_in_half_open:
                    if self._exceeded(window):
                        self._move(BreakerState.OPEN, error_class)
                    else:
                        self._move(BreakerState.CLOSED)
            # OPEN, FORCED_OPEN, DISABLED: nothing is recorded

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

    Operator overrides (:meth:`set_override`) outlive the breaker: a breaker
    created later for an overridden name starts in the operator's state. With
    ``overrides_file`` (or, for :data:`BREAKERS`, the file named by
    ``$STALWART_BREAKER_OVERRIDES``) overrides are shared with every process of
    the node: written there, and read back on :meth:`refresh`.
    """

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: EventBus | None = None,
        overrides_file: str | os.PathLike[str] | None = None,
        _from_env: bool = False,
    ) -> None:
        self.clock = clock
        self.events = events
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._overrides: dict[str, BreakerState] = {}
        self._applied_seq: dict[str, int] = {}
        self._epoch = ""
        self._file = OverrideFile(overrides_file) if overrides_file is not None else None
        self._from_env = _from_env

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
                override = self._overrides.get(name)
                if override is not None:
                    breaker.transition_to(override)
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

    def clear(self) -> None:
        """Forget every breaker and every override of this process (tests use it between
        tests). Entries of the shared override file already applied stay applied-as-seen:
        only newer orders (or a file created anew) are applied at the next :meth:`refresh`."""
        with self._lock:
            self._breakers.clear()
            self._overrides.clear()

    # -- operator overrides ----------------------------------------------------------------

    def set_override(self, name: str, state: BreakerState) -> None:
        """An operator's order for the breaker ``name``: move it to ``state`` now.

        ``FORCED_OPEN``, ``DISABLED`` and ``METRICS_ONLY`` stick: the breaker
        stays there (and a breaker created later for ``name`` starts there) until
        another order. ``CLOSED`` ends an override and closes the breaker with a
        fresh window; ``OPEN``/``HALF_OPEN`` are one-off transitions after which
        the breaker runs by its rules again. The order is written to the shared
        override file when this registry has one.
        """
        if not name:
            raise ConfigError("a breaker override needs a dependency name")
        if not isinstance(state, BreakerState):
            raise ConfigError(f"set_override needs a BreakerState, got {state!r}")
        overrides = self._overrides_file()
        if overrides is not None:
            epoch, entry = overrides.write(name, state.label)
            with self._lock:
                self._adopt_epoch(epoch)
                self._applied_seq[name] = entry.seq
        self._apply(name, state)

    def overrides(self) -> dict[str, BreakerState]:
        """The sticky operator states in force, by dependency name."""
        with self._lock:
            return dict(self._overrides)

    def _apply(self, name: str, state: BreakerState) -> None:
        with self._lock:
            if state.operator:
                self._overrides[name] = state
            else:
                self._overrides.pop(name, None)
            breaker = self._breakers.get(name)
        if breaker is not None:
            breaker.transition_to(state)

    def _adopt_epoch(self, epoch: str) -> None:
        """(lock held) A file created anew: the sequence numbers seen so far are void."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._applied_seq.clear()

    def _overrides_file(self) -> OverrideFile | None:
        if self._from_env:
            path = os.environ.get(OVERRIDES_ENV)
            if not path:
                return None
            if self._file is None or str(self._file.path) != path:
                self._file = OverrideFile(path)
        return self._file

    def sync_overrides(self) -> bool:
        """Apply the shared file's overrides this process has not applied yet (one stat if
        nothing changed); True when the file changed. A file that cannot be read is logged
        and skipped: the breakers keep running by their rules."""
        overrides = self._overrides_file()
        if overrides is None or not overrides.changed():
            return False
        try:
            epoch, entries = overrides.read()
        except (ConfigError, OSError) as exc:
            emit(self.events, "warning", "breaker_overrides_unreadable", error=str(exc))
            return True
        with self._lock:
            self._adopt_epoch(epoch)
        for name, entry in entries.items():
            with self._lock:
                if self._applied_seq.get(name, 0) >= entry.seq:
                    continue
                self._applied_seq[name] = entry.seq
            try:
                state = BreakerState.parse(entry.state)
            except ConfigError as exc:
                emit(self.events, "warning", "breaker_overrides_unreadable", error=str(exc))
                continue
            self._apply(name, state)
        return True

    def refresh(self) -> bool:
        """Apply new shared overrides, then move every open breaker whose wait has passed
        to half-open (and every half-open one past ``max_wait_in_half_open`` to open).

        A breaker changes state only when something looks at it; one no call reaches
        (a fallback serving while the primary is open) would read "open" forever.
        Cheaper than :meth:`snapshot`: only open and half-open breakers take their lock.
        Agent processes call it at every heartbeat. True when something here may change
        with time alone (an override arrived, or a breaker is open or half-open): the
        caller should look again soon, not at an idle process's slow cadence."""
        changed = self.sync_overrides()
        timed = (BreakerState.OPEN, BreakerState.HALF_OPEN)
        for breaker in self:
            if breaker.state in timed:
                changed = True
        return changed

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


BREAKERS = BreakerRegistry(_from_env=True)
"""The process-wide registry :class:`Policy` uses unless given another. Its overrides are
shared through the file ``$STALWART_BREAKER_OVERRIDES`` names (set by the node)."""
