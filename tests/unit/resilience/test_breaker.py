from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import structlog

from stalwart.errors import CircuitOpen, ConfigError
from stalwart.observe import Event, EventBus
from stalwart.resilience import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    Permit,
)
from stalwart.testing import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def make(clock: FakeClock, name: str = "dep", events: EventBus | None = None, **config: Any):
    settings = {"window_size": 10, "minimum_calls": 4, "wait_duration_in_open": 5.0}
    settings.update(config)
    return CircuitBreaker(name, BreakerConfig(**settings), clock=clock, events=events)


def ok(breaker: CircuitBreaker, duration: float = 0.01) -> None:
    breaker.on_success(breaker.acquire_permission(), duration)


def fail(breaker: CircuitBreaker, duration: float = 0.01) -> None:
    breaker.on_failure(breaker.acquire_permission(), duration)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.minimum_calls):
        fail(breaker)
    assert breaker.state is OPEN


# -- closed ---------------------------------------------------------------------------


def test_stays_closed_below_minimum_calls_even_if_all_fail(clock: FakeClock) -> None:
    breaker = make(clock, minimum_calls=5)
    for _ in range(4):
        fail(breaker)
    snap = breaker.snapshot()
    assert snap.state is CLOSED and snap.failures == 4 and snap.failure_rate is None


def test_closed_to_open_when_failure_rate_reaches_the_threshold(clock: FakeClock) -> None:
    breaker = make(clock, failure_rate_threshold=50.0, minimum_calls=4)
    ok(breaker)
    ok(breaker)
    fail(breaker)
    assert breaker.state is CLOSED  # 1 of 3: below minimum calls anyway
    fail(breaker)  # 2 of 4 = 50 %: at the threshold, which trips (>=)
    assert breaker.state is OPEN


def test_just_below_the_threshold_stays_closed(clock: FakeClock) -> None:
    breaker = make(clock, failure_rate_threshold=50.0, window_size=10, minimum_calls=10)
    for _ in range(6):
        ok(breaker)
    for _ in range(4):
        fail(breaker)  # 40 %
    snap = breaker.snapshot()
    assert snap.state is CLOSED and snap.failure_rate == 40.0
    ok(breaker)  # the window slides: still 4 failures of 10
    fail(breaker)  # evicts a success: 5 of 10 = 50 %
    assert breaker.state is OPEN


def test_count_window_forgets_old_failures(clock: FakeClock) -> None:
    breaker = make(clock, window_size=4, minimum_calls=4, failure_rate_threshold=75.0)
    fail(breaker)
    fail(breaker)
    ok(breaker)
    ok(breaker)  # 2 of 4
    ok(breaker)  # evicts a failure: 1 of 4
    fail(breaker)  # evicts the other: 1 of 4 ... plus this one: 1 of 4
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures, snap.state) == (4, 1, CLOSED)


def test_time_window_forgets_calls_older_than_its_duration(clock: FakeClock) -> None:
    breaker = make(clock, sliding_window="time", window_size=10.0, minimum_calls=4)
    fail(breaker)
    fail(breaker)
    fail(breaker)
    clock.advance(10.5)  # those three are now outside the window
    ok(breaker)
    fail(breaker)
    ok(breaker)
    ok(breaker)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures, snap.state) == (4, 1, CLOSED)
    clock.advance(4.0)
    fail(breaker)  # 2 of 5 in the last 10 s
    assert breaker.state is CLOSED
    fail(breaker)  # 3 of 6 = 50 %
    assert breaker.state is OPEN


def test_time_window_counts_calls_inside_the_duration(clock: FakeClock) -> None:
    breaker = make(clock, sliding_window="time", window_size=10.0, minimum_calls=4)
    for _ in range(3):
        fail(breaker)
        clock.advance(3.0)  # failures at 0, 3, 6 and 9: all inside 10 s
    fail(breaker)
    assert breaker.state is OPEN


def test_slow_calls_open_the_breaker_even_when_they_succeed(clock: FakeClock) -> None:
    breaker = make(clock, slow_call_duration=2.0, slow_call_rate_threshold=50.0, minimum_calls=4)
    ok(breaker, duration=0.1)
    ok(breaker, duration=0.1)
    ok(breaker, duration=2.5)
    assert breaker.state is CLOSED
    ok(breaker, duration=2.0)  # exactly the slow duration counts as slow: 2 of 4
    snap = breaker.snapshot()
    assert snap.state is OPEN


def test_permanent_errors_do_not_count_as_failures(clock: FakeClock) -> None:
    breaker = make(clock, minimum_calls=4)
    bad_request = PermissionError("403-like: the caller's fault")
    for _ in range(10):
        breaker.on_error(breaker.acquire_permission(), 0.01, bad_request)
    snap = breaker.snapshot()
    assert snap.state is CLOSED and snap.calls == 0
    for _ in range(4):
        breaker.on_error(breaker.acquire_permission(), 0.01, ConnectionRefusedError("down"))
    assert breaker.state is OPEN


# -- open -----------------------------------------------------------------------------


def test_open_rejects_at_once_without_calling(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    called = False

    def dependency() -> None:
        nonlocal called
        called = True

    with pytest.raises(CircuitOpen, match="trial calls allowed in 5 s") as info:
        breaker.call(dependency)
    assert not called and info.value.dependency == "dep"
    clock.advance(4.9)
    with pytest.raises(CircuitOpen):
        breaker.acquire_permission()


def test_open_to_half_open_after_the_wait(clock: FakeClock) -> None:
    breaker = make(clock, wait_duration_in_open=5.0)
    trip(breaker)
    clock.advance(5.0)
    assert breaker.state is HALF_OPEN


# -- half-open ------------------------------------------------------------------------


def test_half_open_to_closed_after_the_permitted_trials_succeed(clock: FakeClock) -> None:
    breaker = make(clock, permitted_calls_in_half_open=3)
    trip(breaker)
    clock.advance(5.0)
    ok(breaker)
    ok(breaker)
    assert breaker.state is HALF_OPEN
    ok(breaker)
    snap = breaker.snapshot()
    assert snap.state is CLOSED and snap.calls == 0  # a fresh window


def test_half_open_to_open_when_the_trial_window_fails(clock: FakeClock) -> None:
    # resilience4j evaluates the trials as one window once all of them have ended (this
    # test used to expect a reopening on the first failed trial: issue 18)
    breaker = make(clock, permitted_calls_in_half_open=3)
    trip(breaker)
    clock.advance(5.0)
    ok(breaker)
    fail(breaker)
    assert breaker.state is HALF_OPEN  # 1 of 2: undecided until the third trial ends
    fail(breaker)  # 2 of 3 failed: 67 % >= 50 %
    assert breaker.state is OPEN
    with pytest.raises(CircuitOpen):
        breaker.acquire_permission()
    clock.advance(5.0)  # a new wait starts from the reopening
    assert breaker.state is HALF_OPEN


def test_half_open_permits_exactly_the_configured_trials(clock: FakeClock) -> None:
    breaker = make(clock, permitted_calls_in_half_open=2)
    trip(breaker)
    clock.advance(5.0)
    first, second = breaker.acquire_permission(), breaker.acquire_permission()
    with pytest.raises(CircuitOpen, match="half-open; all trial calls are in flight"):
        breaker.acquire_permission()
    breaker.on_success(first, 0.01)
    with pytest.raises(CircuitOpen):
        breaker.acquire_permission()  # permits are for the whole half-open period, not concurrency
    breaker.on_success(second, 0.01)
    assert breaker.state is CLOSED


def test_an_ignored_trial_gives_its_permit_back(clock: FakeClock) -> None:
    breaker = make(clock, permitted_calls_in_half_open=1)
    trip(breaker)
    clock.advance(5.0)
    breaker.on_error(breaker.acquire_permission(), 0.01, ValueError("permanent: says nothing"))
    assert breaker.state is HALF_OPEN
    ok(breaker)
    assert breaker.state is CLOSED


def test_slow_trials_reopen(clock: FakeClock) -> None:
    breaker = make(
        clock, permitted_calls_in_half_open=2, slow_call_duration=1.0, slow_call_rate_threshold=50
    )
    trip(breaker)
    clock.advance(5.0)
    ok(breaker, duration=0.1)
    ok(breaker, duration=1.5)
    assert breaker.state is OPEN


def test_outcomes_from_before_a_transition_are_dropped(clock: FakeClock) -> None:
    breaker = make(clock, permitted_calls_in_half_open=1)
    stale = (
        breaker.acquire_permission()
    )  # admitted while closed; still running when the breaker trips
    trip(breaker)
    clock.advance(5.0)
    assert breaker.state is HALF_OPEN
    breaker.on_failure(stale, 30.0)  # must not decide the half-open trial
    assert breaker.state is HALF_OPEN
    ok(breaker)
    assert breaker.state is CLOSED


def test_reset_closes_with_a_fresh_window(clock: FakeClock) -> None:
    breaker = make(clock)
    trip(breaker)
    breaker.reset()
    assert breaker.state is CLOSED
    ok(breaker)
    assert breaker.snapshot().calls == 1


# -- config, registry, observability --------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 101}, "failure_rate_threshold"),
        ({"slow_call_duration": -1}, "slow_call_duration"),
        ({"window_size": 10.5}, "whole number"),
        ({"window_size": 5, "minimum_calls": 6}, "could never open"),
        ({"minimum_calls": 0}, "minimum_calls"),
        ({"permitted_calls_in_half_open": 0}, "permitted_calls_in_half_open"),
        ({"sliding_window": "sliding"}, "sliding_window"),
        ({"wait_duration_in_open": float("nan")}, "wait_duration_in_open"),
    ],
)
def test_bad_settings_are_rejected(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BreakerConfig(**settings)


def test_time_window_may_be_shorter_than_minimum_calls() -> None:
    assert BreakerConfig(sliding_window="time", window_size=1.5, minimum_calls=50)


def test_registry_gives_one_breaker_per_dependency(clock: FakeClock) -> None:
    registry = BreakerRegistry(clock=clock)
    first = registry.get("model:a", BreakerConfig(minimum_calls=5))
    assert registry.get("model:a") is first
    assert registry.get("model:a", BreakerConfig(minimum_calls=5)) is first
    assert registry.get("model:b") is not first
    with pytest.raises(ConfigError, match="already exists"):
        registry.get("model:a", BreakerConfig(minimum_calls=6))
    assert "model:a" in registry and len(registry) == 2
    assert {b.name for b in registry} == {"model:a", "model:b"}
    assert set(registry.snapshot()) == {"model:a", "model:b"}
    registry.remove("model:a")
    assert "model:a" not in registry


def test_refresh_half_opens_a_breaker_no_call_reaches(
    clock: FakeClock, dep: str, metric: Callable[..., float]
) -> None:
    """What an agent does every heartbeat: a primary nothing calls while the fallback
    serves must not report "open" forever."""
    registry = BreakerRegistry(clock=clock)
    breaker = registry.get(dep, BreakerConfig(minimum_calls=5, wait_duration_in_open=5.0))
    trip(breaker)
    assert metric("stalwart_breaker_state", dependency=dep) == OPEN.value
    clock.advance(4.9)
    registry.refresh()
    assert metric("stalwart_breaker_state", dependency=dep) == OPEN.value
    clock.advance(0.1)
    registry.refresh()
    assert metric("stalwart_breaker_state", dependency=dep) == HALF_OPEN.value


def test_transitions_are_metrics_events_and_logs(
    clock: FakeClock, dep: str, metric: Callable[..., float]
) -> None:
    bus = EventBus(log=False)
    breaker = make(clock, name=dep, events=bus, permitted_calls_in_half_open=1)
    assert metric("stalwart_breaker_state", dependency=dep) == 0
    trip(breaker)
    assert metric("stalwart_breaker_state", dependency=dep) == 1
    with pytest.raises(CircuitOpen):
        breaker.acquire_permission()
    assert metric("stalwart_rejections_total", dependency=dep, reason="circuit_open") == 1
    clock.advance(5.0)
    assert breaker.state is HALF_OPEN
    assert metric("stalwart_breaker_state", dependency=dep) == 2
    ok(breaker)
    assert metric("stalwart_breaker_state", dependency=dep) == 0
    moves = [(e["from_state"], e["to_state"]) for e in bus.recent("breaker_transition")]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert bus.recent("breaker_transition")[0]["failure_rate"] == 100.0
    for old, new in moves:
        labels = {"dependency": dep, "from_state": old, "to_state": new}
        assert metric("stalwart_breaker_transitions_total", **labels) == 1
    (rejected,) = bus.recent("dependency_rejected")
    assert rejected["dependency"] == dep and rejected["error_class"] == "retryable/systemic"

    quiet = make(clock, name=dep + "-log")
    with structlog.testing.capture_logs() as logs:
        trip(quiet)
    (line,) = [x for x in logs if x["event"] == "breaker_transition"]
    assert line["log_level"] == "warning" and line["dependency"] == dep + "-log"

    classified = make(clock, name=dep + "-class", events=bus, minimum_calls=2, window_size=2)
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            classified.call(_refused)
    opened = bus.recent("breaker_transition")[-1]
    assert opened["dependency"] == dep + "-class" and opened["to_state"] == "open"
    assert opened["error_class"] == "retryable/systemic"


def _refused() -> None:
    raise ConnectionRefusedError(111, "refused")


async def test_acall_records_outcomes(clock: FakeClock) -> None:
    breaker = make(clock, minimum_calls=2, window_size=2)

    async def boom() -> None:
        raise ConnectionResetError("x")

    for _ in range(2):
        with pytest.raises(ConnectionResetError):
            await breaker.acall(boom)
    with pytest.raises(CircuitOpen):
        await breaker.acall(boom)


# -- concurrency ----------------------------------------------------------------------


async def test_hammering_never_lets_calls_through_while_open(clock: FakeClock) -> None:
    """Threads and tasks hammer one breaker while it trips, waits, and recovers.

    Every permit names the state period (generation) it was issued in. From the
    ordered transitions we know each period's state, so we can check that no
    permit was ever issued in an open period and at most the permitted number in
    each half-open one.
    """
    permitted = 3
    bus = EventBus(log=False, keep=10_000)
    transitions: list[Event] = []
    bus.subscribe(lambda e: transitions.append(e) if e.name == "breaker_transition" else None)
    breaker = make(clock, events=bus, permitted_calls_in_half_open=permitted, minimum_calls=10)
    issued: collections.Counter[int] = collections.Counter()
    rejected = 0
    healthy = threading.Event()
    healthy.set()
    stop = threading.Event()
    lock = threading.Lock()

    def start_call() -> Permit | None:
        nonlocal rejected
        try:
            permit = breaker.acquire_permission()
        except CircuitOpen:
            with lock:
                rejected += 1
            return None
        with lock:
            issued[permit] += 1
        return permit

    def end_call(permit: Permit) -> None:
        if healthy.is_set():
            breaker.on_success(permit, 0.001)
        else:
            breaker.on_failure(permit, 0.001)

    def thread_worker() -> None:
        while not stop.is_set():
            permit = start_call()
            time.sleep(0)  # let other threads in while this call is "in flight"
            if permit is not None:
                end_call(permit)

    async def task_worker() -> None:
        while not stop.is_set():
            permit = start_call()
            await asyncio.sleep(0)  # many calls in flight at once
            if permit is not None:
                end_call(permit)

    threads = [threading.Thread(target=thread_worker) for _ in range(4)]
    for t in threads:
        t.start()
    tasks = [asyncio.create_task(task_worker()) for _ in range(20)]
    try:
        async with asyncio.timeout(30):
            for _cycle in range(3):
                healthy.clear()  # the dependency fails: the breaker must trip
                while breaker.state is not OPEN:
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.02)  # hammer it while open
                healthy.set()
                clock.advance(5.0)  # the wait passes: trials go through, it recovers
                while breaker.state is not CLOSED:
                    if breaker.state is OPEN:  # a trial admitted while unhealthy reopened it
                        clock.advance(5.0)
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in threads:
            t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)

    states = [CLOSED] + [BreakerState[e["to_state"].upper()] for e in transitions]
    assert states.count(OPEN) >= 3 and states.count(HALF_OPEN) >= 3
    assert max(issued) < len(states)  # every permit belongs to a known period
    for generation, state in enumerate(states):
        if state is OPEN:
            assert issued[generation] == 0, f"a call got through in open period {generation}"
        elif state is HALF_OPEN:
            assert issued[generation] <= permitted, (
                f"{issued[generation]} trial calls in half-open period {generation}"
            )
    assert rejected > 0
    assert breaker.state is CLOSED
