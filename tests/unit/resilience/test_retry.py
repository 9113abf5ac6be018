from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.errors import ConfigError, DeadlineExceeded, RateLimited, RetriesExhausted
from stalwart.observe import EventBus
from stalwart.resilience import GaveUp, Policy, RetryPolicy, effective_timeout, gave_up
from stalwart.testing import FakeClock

T = TypeVar("T")


async def drive(clock: FakeClock, coro: Coroutine[Any, Any, T], limit: int = 10_000) -> T:
    """Run ``coro``, advancing fake time whenever it is parked in ``clock.sleep``."""
    task = asyncio.ensure_future(coro)
    for _ in range(limit):
        if task.done():
            return task.result()
        if clock.pending_sleepers:
            clock.advance(clock.slept[-1])
        await asyncio.sleep(0)
    task.cancel()
    raise AssertionError("coroutine did not finish within the step limit")


class Sleeper:
    """A sync sleep on fake time: records each wait and advances the clock by it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)


class Flaky:
    """Fails with the given errors in order, then returns ``"ok"``; counts calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def policy(clock: FakeClock, dep: str, **retry: Any) -> Policy:
    """A retry-only policy on fake time; its sync waits land in ``clock.slept`` too."""

    def sleep(seconds: float) -> None:
        clock.slept.append(seconds)
        clock.advance(seconds)

    return Policy(
        dep, kind="tool", retry=RetryPolicy(**retry), breaker=None, clock=clock, sync_sleep=sleep
    )


# -- the backoff itself -----------------------------------------------------------------


policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 12),
    base=st.floats(0.001, 2.0),
    multiplier=st.floats(1.0, 4.0),
    cap=st.floats(2.0, 30.0),
    deadline=st.one_of(st.none(), st.floats(0.01, 60.0)),
    jitter=st.booleans(),
    rng=st.randoms(use_true_random=False),
)


@given(policy=policies, retry=st.integers(1, 2000))
def test_backoff_delay_is_within_its_bounds(policy: RetryPolicy, retry: int) -> None:
    bound = policy.backoff_bound(retry)
    assert 0 < bound <= policy.cap
    grows_past_cap = (retry - 1) * math.log(policy.multiplier) >= math.log(policy.cap / policy.base)
    expected = policy.cap if grows_past_cap else policy.base * policy.multiplier ** (retry - 1)
    assert bound == pytest.approx(expected, rel=1e-9)
    delay = policy.delay(retry)
    assert 0 <= delay <= bound
    if not policy.jitter:
        assert delay == bound


@given(policy=policies, retry=st.integers(1, 50), retry_after=st.floats(0, 1e6))
def test_retry_after_is_honoured_up_to_the_cap(
    policy: RetryPolicy, retry: int, retry_after: float
) -> None:
    delay = policy.delay(retry, retry_after=retry_after)
    if retry_after > 0:
        assert delay == min(retry_after, policy.cap)
    else:  # "Retry-After: 0" is no reason to hammer: the backoff applies (as in the SDKs)
        assert 0 <= delay <= policy.backoff_bound(retry)


def test_full_jitter_spreads_over_the_whole_range() -> None:
    policy = RetryPolicy(base=1.0, cap=1.0, rng=random.Random(7))
    delays = [policy.delay(1) for _ in range(2000)]
    assert min(delays) < 0.05 and max(delays) > 0.95
    assert 0.45 < sum(delays) / len(delays) < 0.55


@given(
    policy=policies,
    call_time=st.floats(0.0, 5.0),
    failures=st.integers(0, 15),
)
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
def test_retry_loop_respects_attempts_bounds_and_the_deadline(
    policy: RetryPolicy, call_time: float, failures: int
) -> None:
    clock = FakeClock()
    started = clock.monotonic()
    attempts: list[float] = []

    def call() -> str:
        attempts.append(clock.monotonic())
        # an I/O call that honours the timeout it is given, as a sync attempt must
        clock.advance(min(call_time, effective_timeout()))
        if len(attempts) <= failures:
            raise ConnectionResetError("reset")
        return "ok"

    sleeper = Sleeper(clock)
    runner = Policy(
        "prop", kind="tool", retry=policy, breaker=None, clock=clock, sync_sleep=sleeper
    )
    try:
        assert runner.call(call) == "ok"
        assert len(attempts) == failures + 1
    except ConnectionResetError as exc:  # the last attempt's own error (stamina's rule)
        record = gave_up(exc)
        assert record is not None and record.attempts == len(attempts)
    except DeadlineExceeded:
        assert policy.deadline is not None and len(attempts) == 0
    assert len(attempts) <= policy.max_attempts
    assert len(sleeper.slept) == max(0, len(attempts) - 1)
    for n, pause in enumerate(sleeper.slept, start=1):
        assert 0 <= pause <= policy.backoff_bound(n)
    if policy.deadline is not None:
        assert clock.monotonic() - started <= policy.deadline + 1e-9
        assert all(t - started < policy.deadline for t in attempts)


# -- the retry loop ---------------------------------------------------------------------


def test_retryable_errors_are_retried_until_success(
    clock: FakeClock, dep: str, metric: Callable[..., float]
) -> None:
    flaky = Flaky(ConnectionResetError("reset"), TimeoutError("slow"))
    assert policy(clock, dep, max_attempts=3).call(flaky) == "ok"
    assert flaky.calls == 3
    assert len(clock.slept) == 2
    retries = metric("stalwart_retries_total", dependency=dep, **{"class": "retryable/transient"})
    errors = metric("stalwart_errors_total", dependency=dep, **{"class": "retryable/transient"})
    assert retries == 2 and errors == 2
    assert metric("stalwart_dependency_call_duration_seconds_count", dependency=dep) == 1


def test_permanent_errors_are_raised_after_one_attempt(
    clock: FakeClock, dep: str, metric: Callable[..., float]
) -> None:
    bug = ValueError("a bug")
    flaky = Flaky(bug)
    with pytest.raises(ValueError) as info:
        policy(clock, dep, max_attempts=5).call(flaky)
    assert info.value is bug
    assert flaky.calls == 1 and clock.slept == []
    assert metric("stalwart_errors_total", dependency=dep, **{"class": "permanent/transient"}) == 1
    assert metric("stalwart_retries_total", dependency=dep, **{"class": "permanent/transient"}) == 0


def test_exhausted_attempts_reraise_the_last_error_with_the_attempts_attached(
    clock: FakeClock, dep: str, metric: Callable[..., float]
) -> None:
    last = ConnectionResetError("third")
    flaky = Flaky(ConnectionResetError("1"), ConnectionResetError("2"), last)
    with pytest.raises(ConnectionResetError) as info:
        policy(clock, dep, max_attempts=3).call(flaky)
    assert info.value is last
    assert gave_up(last) == GaveUp(dep, 3, "attempts")
    assert last.__notes__ == [f"stalwart: {dep}: gave up after 3 attempt(s): all 3 attempts failed"]
    assert metric("stalwart_retry_give_ups_total", dependency=dep, reason="attempts") == 1


def test_an_error_raised_at_once_has_no_give_up_record(clock: FakeClock, dep: str) -> None:
    with pytest.raises(ValueError) as info:
        policy(clock, dep, max_attempts=3).call(Flaky(ValueError("a bug")))
    assert gave_up(info.value) is None and not hasattr(info.value, "__notes__")


async def test_async_calls_reraise_the_last_error_too(clock: FakeClock, dep: str) -> None:
    errors = [TimeoutError("1"), TimeoutError("2")]

    async def call() -> str:
        raise errors.pop(0)

    runner = Policy(dep, kind="tool", retry=RetryPolicy(max_attempts=2), breaker=None, clock=clock)
    with pytest.raises(TimeoutError, match="2") as info:
        await drive(clock, runner.acall(call))
    assert gave_up(info.value) == GaveUp(dep, 2, "attempts")


def test_wrap_raises_retries_exhausted_as_before(
    clock: FakeClock, dep: str, metric: Callable[..., float]
) -> None:
    last = ConnectionResetError("third")
    flaky = Flaky(ConnectionResetError("1"), ConnectionResetError("2"), last)
    with pytest.raises(RetriesExhausted) as info:
        policy(clock, dep, max_attempts=3, on_exhausted="wrap").call(flaky)
    exc = info.value
    assert (exc.attempts, exc.last_error, exc.__cause__, exc.dependency) == (3, last, last, dep)
    assert "all 3 attempts failed" in str(exc) and "retryable/transient" in str(exc)
    assert metric("stalwart_retry_give_ups_total", dependency=dep, reason="attempts") == 1


def test_a_cap_below_the_base_is_kept_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"retry.cap = 0.05 is below retry.base = 0.1"):
        retry = RetryPolicy(base=0.1, cap=0.05, jitter=False)
    assert [retry.delay(n) for n in (1, 2, 5)] == [0.05, 0.05, 0.05]


def test_gives_up_before_a_wait_that_would_cross_the_deadline(
    clock: FakeClock, dep: str, metric: Callable[..., float]
) -> None:
    flaky = Flaky(*[ConnectionResetError(str(i)) for i in range(10)])
    runner = policy(clock, dep, max_attempts=10, base=0.6, cap=0.6, jitter=False, deadline=1.0)
    with pytest.raises(ConnectionResetError) as info:
        runner.call(flaky)
    # attempt 1 at t=0, wait 0.6, attempt 2 at t=0.6; a second 0.6 s wait would end at 1.2
    assert gave_up(info.value) == GaveUp(dep, 2, "deadline") and flaky.calls == 2
    assert "could not start before the deadline" in info.value.__notes__[0]
    assert clock.slept == [0.6]
    assert metric("stalwart_retry_give_ups_total", dependency=dep, reason="deadline") == 1


def test_the_enclosing_deadline_bounds_the_retries(clock: FakeClock, dep: str) -> None:
    from stalwart.resilience import deadline_scope

    flaky = Flaky(*[ConnectionResetError(str(i)) for i in range(10)])
    runner = policy(clock, dep, max_attempts=10, base=0.3, cap=0.3, jitter=False)
    started = clock.monotonic()
    with deadline_scope(1.0, clock=clock), pytest.raises(ConnectionResetError):
        runner.call(flaky)
    assert clock.monotonic() - started <= 1.0
    assert flaky.calls == 4  # at 0, 0.3, 0.6, 0.9; the wait to 1.2 is refused


@pytest.mark.parametrize(("cap", "expected"), [(10.0, 3.0), (2.0, 2.0)])
def test_retry_after_replaces_the_backoff_up_to_the_cap(
    clock: FakeClock, dep: str, cap: float, expected: float
) -> None:
    flaky = Flaky(RateLimited("429", retry_after=3.0))
    assert policy(clock, dep, cap=cap).call(flaky) == "ok"
    assert clock.slept == [expected]


def test_no_retry_policy_means_one_attempt_and_the_original_error(
    clock: FakeClock, dep: str
) -> None:
    err = ConnectionResetError("once")
    flaky = Flaky(err)
    runner = Policy(dep, kind="tool", retry=None, breaker=None, clock=clock)
    with pytest.raises(ConnectionResetError) as info:
        runner.call(flaky)
    assert info.value is err and flaky.calls == 1


def test_each_attempt_runs_under_its_own_deadline(clock: FakeClock, dep: str) -> None:
    seen: list[float] = []

    def call() -> str:
        seen.append(effective_timeout())
        clock.advance(2.0)
        if len(seen) < 3:
            raise TimeoutError("slow")
        return "ok"

    runner = Policy(
        dep,
        timeout=5.0,
        retry=RetryPolicy(max_attempts=3, base=1.0, cap=1.0, jitter=False, deadline=9.0),
        breaker=None,
        clock=clock,
        sync_sleep=clock.advance,
    )
    assert runner.call(call) == "ok"
    # attempt 1 at t=0: min(5, 9); attempt 2 at t=3: min(5, 6); attempt 3 at t=6: min(5, 3)
    assert seen == [5.0, 5.0, 3.0]


async def test_async_retries_sleep_on_the_injected_clock(clock: FakeClock, dep: str) -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError("reset")
        return "ok"

    runner = policy(clock, dep, max_attempts=3, base=1.0, cap=1.0, jitter=False)
    assert await drive(clock, runner.acall(call)) == "ok"
    assert calls == 3 and clock.slept == [1.0, 1.0]


async def test_async_permanent_error_is_not_retried(clock: FakeClock, dep: str) -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        raise PermissionError("denied")

    with pytest.raises(PermissionError):
        await drive(clock, policy(clock, dep).acall(call))
    assert calls == 1


async def test_async_attempt_that_hangs_is_cut_at_its_timeout(dep: str) -> None:
    calls = 0
    never = asyncio.Event()

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await never.wait()
        return "ok"

    runner = Policy(dep, timeout=0.05, retry=RetryPolicy(base=0.001, cap=0.001), breaker=None)
    assert await runner.acall(call) == "ok"
    assert calls == 2


async def test_async_hang_past_the_overall_deadline_gives_up(dep: str) -> None:
    never = asyncio.Event()

    async def call() -> str:
        await never.wait()
        return "unreachable"

    loop = asyncio.get_running_loop()
    started = loop.time()
    runner = Policy(
        dep,
        timeout=0.05,
        retry=RetryPolicy(max_attempts=100, base=0.01, cap=0.01, deadline=0.3),
        breaker=None,
    )
    with pytest.raises(DeadlineExceeded) as info:
        await runner.acall(call)
    assert gave_up(info.value) is not None
    assert loop.time() - started < 0.3 + 0.25  # the deadline plus scheduling slack


def test_decorators_sync_and_async(clock: FakeClock, dep: str) -> None:
    runner = policy(clock, dep, max_attempts=2)
    flaky = Flaky(ConnectionResetError("x"))

    @runner
    def fetch(suffix: str) -> str:
        return flaky() + suffix

    assert fetch("!") == "ok!"
    assert fetch.__name__ == "fetch"

    attempts = 0

    @runner
    async def afetch() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionResetError("x")
        return attempts

    assert asyncio.run(drive(clock, afetch())) == 2


def test_retry_policy_alone_call_acall_and_decorator() -> None:
    retry = RetryPolicy(max_attempts=3, base=0.001, cap=0.001)
    flaky = Flaky(ConnectionResetError("x"))
    assert retry.call(flaky) == "ok"

    @retry
    def twice() -> str:
        return "done"

    assert twice() == "done"

    async def once() -> int:
        return 1

    assert asyncio.run(retry.acall(once)) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"base": 0}, "base"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"cap": float("inf")}, "cap"),
        ({"on_exhausted": "ignore"}, "on_exhausted"),
        ({"deadline": -1}, "deadline"),
    ],
)
def test_retry_policy_rejects_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RetryPolicy(**kwargs)


def test_policy_requires_a_deadline_and_a_known_kind() -> None:
    with pytest.raises(ConfigError, match="needs kind= or timeout="):
        Policy("x")
    with pytest.raises(ConfigError, match="unknown operation kind"):
        Policy("x", kind="forever")
    with pytest.raises(ConfigError, match="timeout"):
        Policy("x", timeout=0)


def test_retries_and_give_ups_are_events_with_dependency_and_class(
    clock: FakeClock, dep: str
) -> None:
    bus = EventBus(log=False)
    runner = Policy(
        dep,
        kind="tool",
        retry=RetryPolicy(max_attempts=2),
        breaker=None,
        clock=clock,
        sync_sleep=clock.advance,
        events=bus,
    )
    with pytest.raises(ConnectionResetError):
        runner.call(Flaky(ConnectionResetError("a"), ConnectionResetError("b")))
    (retry,) = bus.recent("dependency_retry")
    (gave,) = bus.recent("dependency_gave_up")
    assert retry["dependency"] == dep and retry["error_class"] == "retryable/transient"
    assert retry["attempt"] == 1 and retry["reason"] == "network_error"
    assert gave["dependency"] == dep and gave["reason"] == "attempts"
    assert gave["error"] == "ConnectionResetError: b"


def test_without_a_bus_events_are_log_lines(clock: FakeClock, dep: str) -> None:
    runner = policy(clock, dep, max_attempts=2)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(PermissionError):
            runner.call(Flaky(PermissionError("no")))
        runner.call(Flaky(ConnectionResetError("a")))
    by_event = {line["event"]: line for line in logs}
    assert by_event["dependency_error"]["error_class"] == "permanent/transient"
    assert by_event["dependency_error"]["dependency"] == dep
    assert by_event["dependency_error"]["log_level"] == "warning"
    assert by_event["dependency_retry"]["error_class"] == "retryable/transient"
