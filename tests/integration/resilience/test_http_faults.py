"""Acceptance 1: retries against a real loopback HTTP server that fails on a script."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalwart.errors import DeadlineExceeded
from stalwart.resilience import (
    Policy,
    RetryPolicy,
    classify,
    current_deadline,
    effective_timeout,
    gave_up,
)

SCHEDULING_GAP_S = 0.25
"""How far, on a busy machine, the test's readings of the clock may trail the policy's own
(a deadline started, an attempt admitted): far below a deadline's 0.5-8 s."""


class VirtualClock:
    """Real wall and monotonic time, plus waits that only move a virtual offset.

    Requests really go over the network; the backoff waits between them are
    recorded and skipped, so a test can check every delay without sleeping.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self.slept: list[float] = []
        self.woke: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:
        return time.time()

    def sleep_sync(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.offset += seconds
        self.woke.append(self.monotonic())

    async def sleep(self, seconds: float) -> None:
        self.sleep_sync(seconds)
        await asyncio.sleep(0)


def get(client: httpx.Client, url: str) -> httpx.Response:
    response = client.get(url, timeout=effective_timeout())
    response.raise_for_status()
    return response


def make_policy(name: str, clock: VirtualClock | None = None, **retry: Any) -> Policy:
    settings_: dict[str, Any] = {"max_attempts": 5, "base": 0.05, "cap": 1.0}
    settings_.update(retry)
    if clock is None:
        return Policy(name, timeout=2.0, retry=RetryPolicy(**settings_), breaker=None)
    return Policy(
        name,
        timeout=2.0,
        retry=RetryPolicy(**settings_),
        breaker=None,
        clock=clock,
        sync_sleep=clock.sleep_sync,
    )


@pytest.fixture
def client() -> Any:
    with httpx.Client(timeout=5.0) as c:
        yield c


def test_status_sequence_is_retried_until_success(fault_server: Any, client: httpx.Client) -> None:
    fault_server.script(503, 500, 502)
    clock = VirtualClock()
    policy = make_policy("seq", clock, base=0.2, multiplier=2.0, cap=0.5)
    assert policy.call(get, client, fault_server.url).status_code == 200
    assert fault_server.hits == 4
    assert len(clock.slept) == 3
    for n, delay in enumerate(clock.slept, start=1):
        assert 0 <= delay <= min(0.5, 0.2 * 2 ** (n - 1))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_permanent_statuses_are_tried_exactly_once(
    fault_server: Any, client: httpx.Client, status: int
) -> None:
    fault_server.script(status, status, status)
    clock = VirtualClock()
    with pytest.raises(httpx.HTTPStatusError) as info:
        make_policy(f"perm-{status}", clock).call(get, client, fault_server.url)
    assert info.value.response.status_code == status
    assert fault_server.hits == 1
    assert clock.slept == []


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(
    fault_server: Any, client: httpx.Client, status: int
) -> None:
    fault_server.script(status)
    assert make_policy(f"retry-{status}", VirtualClock()).call(get, client, fault_server.url)
    assert fault_server.hits == 2


@pytest.mark.parametrize("fault", ["reset", "close"])
def test_connection_resets_and_drops_are_retried(
    fault_server: Any, client: httpx.Client, fault: str
) -> None:
    fault_server.script(fault, fault)
    assert make_policy(f"net-{fault}", VirtualClock()).call(get, client, fault_server.url)
    assert fault_server.hits == 3


@pytest.mark.parametrize(("cap", "expected"), [(10.0, 3.0), (1.0, 1.0)])
def test_retry_after_seconds_is_honoured_up_to_the_cap(
    fault_server: Any, client: httpx.Client, cap: float, expected: float
) -> None:
    fault_server.script((429, {"Retry-After": "3"}))
    clock = VirtualClock()
    make_policy("ra-seconds", clock, cap=cap).call(get, client, fault_server.url)
    assert clock.slept == [expected]


def test_retry_after_http_date_is_honoured(fault_server: Any, client: httpx.Client) -> None:
    when = email.utils.formatdate(time.time() + 4, usegmt=True)
    fault_server.script((503, {"Retry-After": when}))
    clock = VirtualClock()
    make_policy("ra-date", clock, cap=30.0).call(get, client, fault_server.url)
    (delay,) = clock.slept
    assert 2.0 < delay <= 4.0  # HTTP-dates have one-second resolution


def test_a_hanging_server_is_cut_at_the_attempt_timeout(fault_server: Any) -> None:
    fault_server.script("hang")
    policy = Policy("hang-sync", timeout=0.3, retry=RetryPolicy(base=0.01, cap=0.01), breaker=None)
    started = time.monotonic()
    with httpx.Client(timeout=30.0) as client:  # the policy's 0.3 s wins via effective_timeout
        assert policy.call(get, client, fault_server.url).status_code == 200
    assert fault_server.hits == 2
    assert 0.3 <= time.monotonic() - started < 5.0


async def test_async_hang_is_cancelled_at_the_attempt_deadline(fault_server: Any) -> None:
    fault_server.script("hang")
    policy = Policy("hang-async", timeout=0.3, retry=RetryPolicy(base=0.01, cap=0.01), breaker=None)
    async with httpx.AsyncClient(timeout=30.0) as client:  # no help from the client timeout

        async def fetch() -> int:
            response = await client.get(fault_server.url)
            response.raise_for_status()
            return response.status_code

        assert await policy.acall(fetch) == 200
    assert fault_server.hits == 2


def test_never_past_the_overall_deadline(fault_server: Any) -> None:
    fault_server.default = "hang"
    policy = Policy(
        "deadline",
        timeout=0.25,
        retry=RetryPolicy(max_attempts=50, base=0.05, cap=0.1, deadline=1.0),
        breaker=None,
    )
    started = time.monotonic()
    with (
        httpx.Client(timeout=30.0) as client,
        pytest.raises((httpx.TimeoutException, DeadlineExceeded)) as info,
    ):
        policy.call(get, client, fault_server.url)
    elapsed = time.monotonic() - started
    assert elapsed <= 1.0 + 0.3, elapsed  # the deadline, plus socket-timeout granularity
    assert gave_up(info.value) is not None  # the last attempt's own error, attempts attached
    assert 2 <= fault_server.hits <= 5


async def test_async_never_past_the_overall_deadline(fault_server: Any) -> None:
    fault_server.default = "hang"
    policy = Policy(
        "deadline-async",
        timeout=0.25,
        retry=RetryPolicy(max_attempts=50, base=0.05, cap=0.1, deadline=1.0),
        breaker=None,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with httpx.AsyncClient(timeout=30.0) as client:

        async def fetch() -> int:
            return (await client.get(fault_server.url)).status_code

        with pytest.raises(DeadlineExceeded) as info:
            await policy.acall(fetch)
    elapsed = loop.time() - started
    assert elapsed <= 1.0 + 0.3, elapsed
    assert gave_up(info.value) is not None
    assert 2 <= fault_server.hits <= 5


ACTIONS = st.sampled_from(
    [
        200,
        400,
        401,
        403,
        404,
        429,
        500,
        502,
        503,
        504,
        "reset",
        "close",
        (429, {"Retry-After": "2"}),
    ]
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    script=st.lists(ACTIONS, min_size=1, max_size=8),
    policy=st.builds(
        RetryPolicy,
        max_attempts=st.integers(1, 6),
        base=st.floats(0.01, 1.0),
        multiplier=st.floats(1.0, 3.0),
        cap=st.floats(1.0, 5.0),
        deadline=st.one_of(st.none(), st.floats(0.5, 8.0)),
    ),
)
def test_property_retries_only_the_right_errors_within_bounds(
    fault_server: Any, script: list[Any], policy: RetryPolicy
) -> None:
    """Over random scripts and policies, against the real server."""
    fault_server.arrivals.clear()
    fault_server._script.clear()
    fault_server.script(*script)
    clock = VirtualClock()
    # No script action hangs, so no attempt should time out: the bounds only catch a
    # wedged server. They were 2 s (attempt) and 5 s (client), and one attempt of a loaded
    # full-suite run took longer to be answered (a ReadTimeout where a 403 was scripted).
    runner = Policy(
        "property",
        timeout=20.0,
        retry=policy,
        breaker=None,
        clock=clock,
        sync_sleep=clock.sleep_sync,
    )
    starts: list[float] = []
    bounds: list[float] = []  # each attempt's own deadline, as the policy set it

    def attempt(client: httpx.Client) -> httpx.Response:
        starts.append(clock.monotonic())
        deadline = current_deadline()
        assert deadline is not None  # every attempt runs under one
        bounds.append(deadline.at)
        return get(client, fault_server.url)

    outcome: Any
    with httpx.Client(timeout=20.0) as client:
        # read here, not before the client is built (~20 ms): the deadline starts with the
        # call, and a reading taken earlier put the test's deadline before the policy's
        started = clock.monotonic()
        try:
            outcome = runner.call(attempt, client)
        except Exception as exc:
            outcome = exc
    hits = fault_server.hits
    served = [*script, 200][:hits]
    assert 1 <= hits <= policy.max_attempts
    # every request but the last got a retryable failure: nothing else is ever retried
    for action in served[:-1]:
        status = action[0] if isinstance(action, tuple) else action
        assert status in (429, 500, 502, 503, 504, "reset", "close")
    last = served[-1]
    if last == 200:
        assert isinstance(outcome, httpx.Response)
    elif last in (400, 401, 403, 404):
        assert isinstance(outcome, httpx.HTTPStatusError)  # permanent: raised as is, once
        assert gave_up(outcome) is None
    else:
        assert isinstance(outcome, Exception) and gave_up(outcome) is not None
        assert classify(outcome).retryable
    assert len(clock.slept) == hits - 1
    for n, (delay, action) in enumerate(zip(clock.slept, served, strict=False), start=1):
        if isinstance(action, tuple):  # Retry-After: 2
            assert delay == min(2.0, policy.cap)
        else:
            assert 0 <= delay <= policy.backoff_bound(n)
    if policy.deadline is not None:
        # no attempt starts and no wait ends past the deadline; a sync attempt in flight
        # at the deadline is bounded by the timeout it was given (the time that was left)
        end = started + policy.deadline
        # The policy starts its deadline when the call starts and checks the time left
        # before each attempt, whose first line reads the clock here: the test's readings
        # trail the policy's own by the scheduling of this thread (16 ms once with both
        # cores busy, make test 2026-12-07: 8432.93 against 8432.92), so they are compared
        # with SCHEDULING_GAP_S of room. Every attempt is bounded by the deadline...
        assert all(at <= end + SCHEDULING_GAP_S for at in bounds), (bounds, end)
        # ...admitted before it, and no wait ends after it
        assert all(t < end + SCHEDULING_GAP_S for t in starts), (starts, end)
        assert all(t <= end + SCHEDULING_GAP_S for t in clock.woke), (clock.woke, end)
        assert clock.monotonic() - started <= policy.deadline + 0.5
