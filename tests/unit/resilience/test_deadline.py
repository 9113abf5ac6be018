from __future__ import annotations

import asyncio
import contextvars

import pytest

from stalwart.config import Timeouts
from stalwart.errors import ConfigError, DeadlineExceeded
from stalwart.resilience import (
    Deadline,
    current_deadline,
    deadline_scope,
    default_timeouts,
    effective_timeout,
    set_default_timeouts,
)
from stalwart.testing import FakeClock


def test_deadline_after_counts_down_on_its_clock(clock: FakeClock) -> None:
    deadline = Deadline.after(10, clock=clock)
    assert deadline.remaining() == 10
    clock.advance(4)
    assert deadline.remaining() == pytest.approx(6)
    assert not deadline.expired
    clock.advance(6)
    assert deadline.expired
    assert deadline.remaining() == 0.0
    with pytest.raises(DeadlineExceeded, match="fetch"):
        deadline.check("fetch")


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan")])
def test_deadline_after_rejects_nonsense(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        Deadline.after(bad)


def test_earliest_picks_the_sooner_deadline(clock: FakeClock) -> None:
    soon, late = Deadline.after(1, clock=clock), Deadline.after(5, clock=clock)
    assert soon.earliest(late) is soon
    assert late.earliest(soon) is soon
    assert late.earliest(None) is late


def test_nested_scope_never_outlives_its_parent(clock: FakeClock) -> None:
    assert current_deadline() is None
    with deadline_scope(2, clock=clock) as outer:
        assert current_deadline() is outer
        with deadline_scope(30, clock=clock) as inner:
            assert inner is outer  # the parent's 2 s wins over the child's 30 s
            assert effective_timeout(timeout=30) == 2
        with deadline_scope(0.5, clock=clock) as tighter:
            assert tighter.remaining() == 0.5
            assert effective_timeout("model") == 0.5
        assert current_deadline() is outer
    assert current_deadline() is None


def test_scope_by_kind_uses_the_configured_default(clock: FakeClock) -> None:
    with deadline_scope(kind="health", clock=clock) as deadline:
        assert deadline.remaining() == 3.0
    with deadline_scope(kind="model", clock=clock) as deadline:
        assert deadline.remaining() == 60.0


def test_effective_timeout_without_parent_is_the_kind_default() -> None:
    assert effective_timeout("tool") == 15.0
    assert effective_timeout(timeout=2.5) == 2.5
    with pytest.raises(TypeError, match="kind= or timeout="):
        effective_timeout()
    with pytest.raises(ConfigError, match="unknown operation kind 'modle'"):
        effective_timeout("modle")


def test_effective_timeout_inside_an_expired_scope_refuses_to_start(clock: FakeClock) -> None:
    with deadline_scope(1, clock=clock):
        clock.advance(1.5)
        with pytest.raises(DeadlineExceeded, match="expired"):
            effective_timeout("tool")
        with pytest.raises(DeadlineExceeded), deadline_scope(5, clock=clock):
            pass  # never reached: entering an expired scope fails at once


def test_scope_requires_a_bound() -> None:
    with pytest.raises(TypeError, match="timeout or a kind"):
        deadline_scope()


def test_configured_timeouts_are_used_and_out_of_range_rejected() -> None:
    with pytest.raises(
        ConfigError, match=r"timeouts.model = 500 is outside the allowed range 30-120"
    ):
        Timeouts(model=500)
    with pytest.raises(ConfigError, match="health"):
        Timeouts(health=1)
    previous = default_timeouts()
    try:
        set_default_timeouts(Timeouts(tool=7.0))
        assert effective_timeout("tool") == 7.0
    finally:
        set_default_timeouts(previous)
    with pytest.raises(ConfigError):
        set_default_timeouts({"tool": 7.0})  # type: ignore[arg-type]


async def test_deadline_follows_tasks_and_threads(clock: FakeClock) -> None:
    async def child() -> float:
        return effective_timeout("model")

    with deadline_scope(4, clock=clock):
        assert await asyncio.create_task(child()) == 4
        assert await asyncio.to_thread(effective_timeout, "model") == 4
    # a context copied before the scope does not see it
    ctx = contextvars.copy_context()
    assert ctx.run(current_deadline) is None


async def test_async_scope_enforces_the_deadline() -> None:
    started = asyncio.get_running_loop().time()
    never = asyncio.Event()
    with pytest.raises(DeadlineExceeded, match="did not finish before its deadline"):
        async with deadline_scope(0.05):
            await never.wait()
    elapsed = asyncio.get_running_loop().time() - started
    assert 0.04 <= elapsed < 2.0
    assert current_deadline() is None


async def test_async_scope_is_bounded_by_the_parent() -> None:
    loop = asyncio.get_running_loop()
    never = asyncio.Event()
    started = loop.time()
    with pytest.raises(DeadlineExceeded):
        async with deadline_scope(0.05), deadline_scope(30):
            await never.wait()
    assert loop.time() - started < 2.0


async def test_async_scope_lets_a_foreign_timeout_error_through() -> None:
    with pytest.raises(TimeoutError) as info:
        async with deadline_scope(5):
            raise TimeoutError("from the body")
    assert not isinstance(info.value, DeadlineExceeded)
    assert str(info.value) == "from the body"


async def test_async_scope_returns_normally_in_time() -> None:
    async with deadline_scope(5) as deadline:
        await asyncio.sleep(0)
        assert 0 < deadline.remaining() <= 5


def test_scope_accepts_a_ready_deadline(clock: FakeClock) -> None:
    deadline = Deadline.after(7, clock=clock)
    with deadline_scope(deadline) as effective:
        assert effective is deadline
        clock.advance(2)
        assert effective_timeout("model") == 5


def test_policies_read_the_kind_default_at_call_time(clock: FakeClock) -> None:
    from stalwart.resilience import Policy

    policy = Policy("late-config", kind="tool", retry=None, breaker=None, clock=clock)
    previous = default_timeouts()
    try:
        set_default_timeouts(Timeouts(tool=9.0))
        assert policy.call(effective_timeout) == 9.0
    finally:
        set_default_timeouts(previous)
    assert policy.call(effective_timeout) == 15.0
