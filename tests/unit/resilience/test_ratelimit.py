from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from stalwart.errors import ConfigError, RateLimited
from stalwart.resilience import RateLimiter, TokenBucket, deadline_scope
from stalwart.testing import FakeClock


async def parked(clock: FakeClock, sleepers: int) -> None:
    """Let tasks run until ``sleepers`` of them wait on the fake clock (bounded)."""
    for _ in range(1000):
        if clock.pending_sleepers >= sleepers:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"expected {sleepers} sleepers, have {clock.pending_sleepers}")


def test_bucket_starts_full_and_refills_at_its_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(10, per=1.0, clock=clock)
    assert all(bucket.try_acquire() for _ in range(10))
    assert not bucket.try_acquire()
    clock.advance(0.1)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.advance(100)
    assert bucket.available == 10  # never more than the capacity


def test_capacity_allows_a_burst_above_the_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(1, per=1.0, capacity=5, clock=clock)
    assert bucket.try_acquire(5)
    assert bucket.wait_time(2) == pytest.approx(2.0)


def test_asking_for_more_than_the_capacity_is_an_error(clock: FakeClock) -> None:
    bucket = TokenBucket(5, clock=clock)
    with pytest.raises(ValueError, match="could never be granted"):
        bucket.try_acquire(6)
    with pytest.raises(ValueError, match=">= 0"):
        bucket.try_acquire(-1)


@pytest.mark.parametrize("kwargs", [{"rate": 0}, {"rate": 1, "per": -1}, {"rate": float("inf")}])
def test_bad_settings_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        TokenBucket(**kwargs)


async def test_acquire_waits_for_the_refill(clock: FakeClock) -> None:
    bucket = TokenBucket(2, per=1.0, clock=clock)
    await bucket.acquire(2)
    task = asyncio.create_task(bucket.acquire(1))
    await parked(clock, 1)
    assert clock.slept == [0.5]
    assert not task.done()
    clock.advance(0.5)
    await asyncio.wait_for(task, timeout=5)


async def test_waiters_are_served_in_arrival_order(clock: FakeClock) -> None:
    bucket = TokenBucket(1, per=1.0, clock=clock)
    await bucket.acquire()
    done: list[int] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        done.append(i)

    tasks = [asyncio.create_task(take(i)) for i in range(3)]
    await parked(clock, 3)
    assert clock.slept == [1.0, 2.0, 3.0]  # each reserved behind the one before
    for expected in ([0], [0, 1], [0, 1, 2]):
        clock.advance(1.0)
        for _ in range(10):
            await asyncio.sleep(0)
        assert done == expected
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)


async def test_reject_when_the_wait_exceeds_max_wait(
    clock: FakeClock, metric: Callable[..., float]
) -> None:
    bucket = TokenBucket(1, per=2.0, clock=clock, name="bucket-reject")
    await bucket.acquire()
    with pytest.raises(RateLimited) as info:
        await bucket.acquire(max_wait=1.0)
    assert info.value.retry_after == pytest.approx(2.0)
    assert bucket.available == 0  # the rejected caller took nothing
    with pytest.raises(RateLimited):
        await bucket.acquire(max_wait=0)  # reject mode
    assert (
        metric("stalwart_rejections_total", dependency="bucket-reject", reason="rate_limited") == 2
    )


async def test_the_enclosing_deadline_bounds_the_wait(clock: FakeClock) -> None:
    bucket = TokenBucket(1, per=10.0, clock=clock)
    await bucket.acquire()
    with deadline_scope(3, clock=clock), pytest.raises(RateLimited, match="more than the 3 s"):
        await bucket.acquire()


async def test_a_cancelled_waiter_returns_its_units(clock: FakeClock) -> None:
    bucket = TokenBucket(1, per=1.0, clock=clock)
    await bucket.acquire()
    task = asyncio.create_task(bucket.acquire())
    await parked(clock, 1)
    assert bucket.available == -1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bucket.available == 0


def test_debit_charges_costs_known_afterwards(clock: FakeClock) -> None:
    bucket = TokenBucket(100, per=1.0, clock=clock)
    bucket.debit(150)
    assert bucket.available == -50
    assert bucket.wait_time(1) == pytest.approx(0.51)


async def test_rate_limiter_takes_requests_and_tokens_together(clock: FakeClock) -> None:
    limiter = RateLimiter("model-x", requests=3, tokens=1000, per=60.0, clock=clock)
    limiter.try_acquire(tokens=900)
    with pytest.raises(RateLimited) as info:
        limiter.try_acquire(tokens=200)  # tokens short, requests fine: nothing is taken
    assert info.value.retry_after == pytest.approx(6.0)
    assert limiter.requests is not None and limiter.requests.available == 2
    limiter.try_acquire(tokens=100)
    limiter.try_acquire()
    with pytest.raises(RateLimited):
        limiter.try_acquire()  # out of requests
    task = asyncio.create_task(limiter.acquire(tokens=10, max_wait=30))
    await parked(clock, 1)
    assert clock.slept == [pytest.approx(20.0)]  # one request refills in 60/3 s
    clock.advance(20.0)
    await asyncio.wait_for(task, timeout=5)


def test_rate_limiter_needs_a_limit() -> None:
    with pytest.raises(ConfigError):
        RateLimiter("nothing")


def test_rate_limiter_debits_tokens(clock: FakeClock) -> None:
    limiter = RateLimiter("model-y", tokens=100, per=1.0, clock=clock)
    limiter.debit_tokens(100)
    with pytest.raises(RateLimited):
        limiter.try_acquire(tokens=1)
