from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.errors import CircuitOpen, RateLimited, RetriesExhausted
from stalwart.resilience import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    Policy,
    RetryPolicy,
    TokenBucket,
    effective_timeout,
)
from stalwart.testing import FakeClock

BREAKER = BreakerConfig(window_size=4, minimum_calls=4, wait_duration_in_open=10.0)


def stack(clock: FakeClock, registry: BreakerRegistry, dep: str, **kw: Any) -> Policy:
    kw.setdefault("retry", RetryPolicy(max_attempts=10, base=0.1, cap=0.1, jitter=False))
    kw.setdefault("breaker", BREAKER)
    return Policy(dep, kind="tool", clock=clock, registry=registry, sync_sleep=clock.advance, **kw)


class Down:
    def __init__(self, exc: Exception | None = None) -> None:
        self.calls = 0
        self.exc = exc or ConnectionRefusedError(111, "refused")

    def __call__(self) -> str:
        self.calls += 1
        raise self.exc


def test_breaker_opening_mid_retry_stops_the_retries(
    clock: FakeClock, registry: BreakerRegistry, dep: str, metric: Callable[..., float]
) -> None:
    down = Down()
    started = clock.monotonic()
    with pytest.raises(CircuitOpen) as info:
        stack(clock, registry, dep).call(down)
    assert down.calls == 4  # the 4th failure tripped the breaker; no 5th attempt
    assert clock.monotonic() - started == pytest.approx(0.3)  # 3 waits; none after the trip
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert metric("stalwart_retry_give_ups_total", dependency=dep, reason="circuit_open") == 1
    assert metric("stalwart_errors_total", dependency=dep, **{"class": "retryable/systemic"}) == 4


async def test_an_open_breaker_fails_fast_without_calling(
    clock: FakeClock, registry: BreakerRegistry, dep: str
) -> None:
    policy = stack(clock, registry, dep)
    assert policy.breaker is not None
    with pytest.raises(CircuitOpen):
        policy.call(Down())
    called = 0

    async def dependency() -> str:
        nonlocal called
        called += 1
        return "ok"

    with pytest.raises(CircuitOpen):
        await policy.acall(dependency)
    assert called == 0 and clock.slept == []
    clock.advance(10.0)  # the wait passes; trials succeed; the breaker closes by itself
    for _ in range(BREAKER.permitted_calls_in_half_open):
        assert await policy.acall(dependency) == "ok"
    assert policy.breaker.state is BreakerState.CLOSED


def test_permanent_errors_through_the_policy_leave_the_breaker_closed(
    clock: FakeClock, registry: BreakerRegistry, dep: str
) -> None:
    policy = stack(clock, registry, dep)
    bad = Down(PermissionError("403"))
    for _ in range(20):
        with pytest.raises(PermissionError):
            policy.call(bad)
    assert bad.calls == 20
    assert policy.breaker is not None and policy.breaker.state is BreakerState.CLOSED


def test_policies_for_one_dependency_share_its_breaker(
    clock: FakeClock, registry: BreakerRegistry, dep: str
) -> None:
    first = stack(clock, registry, dep, retry=None)
    second = stack(clock, registry, dep, retry=None)
    assert first.breaker is second.breaker
    for _ in range(4):
        with pytest.raises(ConnectionRefusedError):
            first.call(Down())
    with pytest.raises(CircuitOpen):
        second.call(lambda: "never called")


def test_a_ready_breaker_can_be_passed(clock: FakeClock, dep: str) -> None:
    breaker = CircuitBreaker(dep, BREAKER, clock=clock)
    policy = Policy(dep, timeout=1.0, breaker=breaker, clock=clock)
    assert policy.breaker is breaker
    assert policy.call(lambda: 5) == 5
    assert breaker.snapshot().calls == 1


def test_sync_rate_limit_rejects_without_calling_or_retrying(
    clock: FakeClock, registry: BreakerRegistry, dep: str
) -> None:
    bucket = TokenBucket(1, per=60.0, clock=clock)
    policy = stack(clock, registry, dep, rate_limiter=bucket)
    assert policy.call(lambda: "first") == "first"
    calls = 0

    def dependency() -> str:
        nonlocal calls
        calls += 1
        return "second"

    with pytest.raises(RateLimited) as info:
        policy.call(dependency)
    assert calls == 0 and info.value.retry_after == pytest.approx(60.0)


async def test_async_rate_limit_waits_within_the_deadline(
    clock: FakeClock, registry: BreakerRegistry, dep: str
) -> None:
    bucket = TokenBucket(1, per=4.0, clock=clock)
    policy = stack(clock, registry, dep, rate_limiter=bucket)

    async def dependency() -> float:
        return effective_timeout()

    assert await policy.acall(dependency) == 15.0
    task = asyncio.create_task(policy.acall(dependency))
    for _ in range(100):
        if clock.pending_sleepers:
            break
        await asyncio.sleep(0)
    assert clock.slept == [4.0]
    clock.advance(4.0)
    assert await asyncio.wait_for(task, timeout=5) == 11.0  # the wait came out of the attempt


async def test_cancelling_a_trial_call_returns_its_permit(
    clock: FakeClock, registry: BreakerRegistry, dep: str
) -> None:
    policy = stack(
        clock,
        registry,
        dep,
        breaker=BreakerConfig(
            window_size=2,
            minimum_calls=2,
            wait_duration_in_open=1.0,
            permitted_calls_in_half_open=1,
        ),
    )
    for _ in range(2):
        with pytest.raises((ConnectionRefusedError, CircuitOpen, RetriesExhausted)):
            policy.call(Down())
    clock.advance(1.0)
    started = asyncio.Event()
    never = asyncio.Event()

    async def hang() -> str:
        started.set()
        await never.wait()
        return "unreachable"

    task = asyncio.create_task(policy.acall(hang))
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def fine() -> str:
        return "ok"

    assert await policy.acall(fine) == "ok"  # the permit came back: a new trial was allowed
    assert policy.breaker is not None and policy.breaker.state is BreakerState.CLOSED


def test_policy_events_name_the_dependency_and_class_everywhere(
    clock: FakeClock, registry: BreakerRegistry, dep: str
) -> None:
    from stalwart.observe import EventBus

    bus = EventBus(log=False)
    policy = stack(clock, registry, dep, events=bus)
    with pytest.raises(CircuitOpen):
        policy.call(Down())
    with pytest.raises(CircuitOpen):
        policy.call(Down())
    names = [e.name for e in bus.recent()]
    assert names == [
        *["dependency_retry"] * 3,
        "breaker_transition",  # the 4th failure trips it...
        "dependency_gave_up",  # ...so that call stops at once, without a wasted wait
        "dependency_rejected",  # the next call is refused at the door
    ]
    assert bus.recent("dependency_gave_up")[0]["reason"] == "circuit_open"
    for event in bus.recent():
        assert event["dependency"] == dep
        assert event["error_class"] == "retryable/systemic"
