"""Stateful property test: the breaker against a reference model of resilience4j's
CircuitBreaker (issue 18).

The model below is written from resilience4j's specification, not from the
breaker's code: a list of recorded outcomes per state period, thresholds checked
after every recorded outcome once ``minimum_calls`` are in, the half-open trials
as one count window whose minimum is its size, time-driven open -> half-open
and (with ``max_wait_in_half_open``) half-open -> open, and the operator states.
The one deliberate approximation it shares with the breaker is the time window's
granularity: an outcome belongs to bucket ``floor(t / (window / 20))`` and leaves
the window when the clock reaches the 20th bucket after it (resilience4j uses
one-second buckets; docs/resilience.md).

Hypothesis drives calls (acquired, then ended as success, failure or ignored,
fast or slow, in any interleaving), clock advances and operator transitions, on
the fake clock; after every step the breaker's state, window counts and the
decision to admit or reject must equal the model's.
"""

from __future__ import annotations

import dataclasses
import math

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from stalwart.errors import CircuitOpen
from stalwart.resilience import BreakerConfig, BreakerState, CircuitBreaker, Permit
from stalwart.testing import FakeClock

S = BreakerState
SLOW = 1.0  # slow_call_duration of every generated config
TIME_WINDOW = 10.0


@dataclasses.dataclass
class Model:
    """resilience4j's CircuitBreaker, as specified (see the module docstring)."""

    config: BreakerConfig
    now: float
    state: BreakerState = S.CLOSED
    period: int = 0
    outcomes: list[tuple[bool, bool, float]] = dataclasses.field(default_factory=list)
    open_until: float = 0.0
    half_open_until: float = math.inf
    trials_issued: int = 0

    def move(self, to: BreakerState) -> None:
        self.state = to
        self.period += 1
        self.outcomes = []
        self.trials_issued = 0
        if to is S.OPEN:
            self.open_until = self.now + self.config.wait_duration_in_open
        wait = self.config.max_wait_in_half_open
        self.half_open_until = self.now + wait if to is S.HALF_OPEN and wait > 0 else math.inf

    def tick(self) -> None:
        if self.state is S.OPEN and self.now >= self.open_until:
            self.move(S.HALF_OPEN)
        elif self.state is S.HALF_OPEN and self.now >= self.half_open_until:
            self.move(S.OPEN)

    def window(self) -> list[tuple[bool, bool, float]]:
        if self.state is S.HALF_OPEN or self.config.sliding_window == "count":
            size = (
                self.config.permitted_calls_in_half_open
                if self.state is S.HALF_OPEN
                else int(self.config.window_size)
            )
            return self.outcomes[-size:]
        width = self.config.window_size / 20
        current = math.floor(self.now / width)
        return [o for o in self.outcomes if math.floor(o[2] / width) > current - 20]

    def exceeded(self, window: list[tuple[bool, bool, float]]) -> bool:
        calls = len(window)
        failures = sum(f for f, _, _ in window)
        slow = sum(s for _, s, _ in window)
        return (
            failures * 100.0 / calls >= self.config.failure_rate_threshold
            or slow * 100.0 / calls >= self.config.slow_call_rate_threshold
        )

    def acquire(self) -> int | None:
        """The period the permit belongs to, or None when the call is rejected."""
        self.tick()
        if self.state in (S.CLOSED, S.DISABLED, S.METRICS_ONLY):
            return self.period
        if (
            self.state is S.HALF_OPEN
            and self.trials_issued < self.config.permitted_calls_in_half_open
        ):
            self.trials_issued += 1
            return self.period
        return None

    def record(self, period: int, failure: bool, slow: bool) -> None:
        if period != self.period:
            return
        if self.state in (S.CLOSED, S.METRICS_ONLY):
            self.outcomes.append((failure, slow, self.now))
            window = self.window()
            if (
                self.state is S.CLOSED
                and len(window) >= self.config.minimum_calls
                and self.exceeded(window)
            ):
                self.move(S.OPEN)
        elif self.state is S.HALF_OPEN:
            self.outcomes.append((failure, slow, self.now))
            if len(self.outcomes) >= self.config.permitted_calls_in_half_open:
                self.move(S.OPEN if self.exceeded(self.outcomes) else S.CLOSED)

    def ignore(self, period: int) -> None:
        if period == self.period and self.state is S.HALF_OPEN and self.trials_issued > 0:
            self.trials_issued -= 1


thresholds = st.sampled_from([25.0, 50.0, 75.0, 100.0])


@st.composite
def configs(draw: st.DrawFn) -> BreakerConfig:
    kind = draw(st.sampled_from(["count", "time"]))
    if kind == "count":
        size = draw(st.integers(1, 6))
        minimum = draw(st.integers(1, size))
        window: float = size
    else:
        window, minimum = TIME_WINDOW, draw(st.integers(1, 5))
    return BreakerConfig(
        failure_rate_threshold=draw(thresholds),
        slow_call_rate_threshold=draw(thresholds),
        slow_call_duration=SLOW,
        sliding_window=kind,
        window_size=window,
        minimum_calls=minimum,
        wait_duration_in_open=5.0,
        permitted_calls_in_half_open=draw(st.integers(1, 4)),
        max_wait_in_half_open=draw(st.sampled_from([0.0, 3.0])),
    )


class BreakerMachine(RuleBasedStateMachine):
    """Drive a breaker and the model with the same steps and compare them."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.in_flight: list[tuple[Permit, int]] = []

    @initialize(config=configs())
    def start(self, config: BreakerConfig) -> None:
        self.breaker = CircuitBreaker("model", config, clock=self.clock)
        self.model = Model(config, self.clock.monotonic())

    @rule()
    def acquire(self) -> None:
        expected = self.model.acquire()
        try:
            permit = self.breaker.acquire_permission()
        except CircuitOpen:
            assert expected is None, f"rejected, but the model admits in {self.model.state}"
            return
        assert expected is not None, f"admitted, but the model rejects in {self.model.state}"
        self.in_flight.append((permit, expected))

    @precondition(lambda self: bool(self.in_flight))
    @rule(
        index=st.integers(0, 10),
        outcome=st.sampled_from(["success", "failure", "ignored"]),
        slow=st.booleans(),
    )
    def end(self, index: int, outcome: str, slow: bool) -> None:
        permit, period = self.in_flight.pop(index % len(self.in_flight))
        duration = SLOW + 0.5 if slow else 0.01
        if outcome == "ignored":
            self.breaker.on_ignored(permit)
            self.model.ignore(period)
        elif outcome == "failure":
            self.breaker.on_failure(permit, duration)
            self.model.record(period, True, slow)
        else:
            self.breaker.on_success(permit, duration)
            self.model.record(period, False, slow)

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.5, 3.0, 5.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.now = self.clock.monotonic()

    @rule(state=st.sampled_from(list(BreakerState)))
    def operator(self, state: BreakerState) -> None:
        self.breaker.transition_to(state)
        if self.model.state is not state:
            self.model.move(state)
        elif state is S.CLOSED:
            self.model.outcomes = []

    @invariant()
    def agrees(self) -> None:
        if not hasattr(self, "model"):
            return
        self.model.tick()
        snap = self.breaker.snapshot()
        assert snap.state is self.model.state
        window = self.model.window()
        assert snap.calls == len(window)
        assert snap.failures == sum(f for f, _, _ in window)
        assert snap.slow_calls == sum(s for _, s, _ in window)


BreakerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerAgainstModel = BreakerMachine.TestCase
