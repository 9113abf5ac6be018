"""Acceptance 3: block the network to a dependency; the breaker trips, fails fast, recovers.

Time for the breaker (its wait in the open state) is a FakeClock, so the tests
move it forward instead of sleeping; the network, the refusals and the hangs
are real.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from stalwart.errors import CircuitOpen, DeadlineExceeded
from stalwart.observe import EventBus
from stalwart.resilience import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    Policy,
    RetryPolicy,
    effective_timeout,
    gave_up,
)
from stalwart.testing import FakeClock

BREAKER = BreakerConfig(
    window_size=4, minimum_calls=4, wait_duration_in_open=30.0, permitted_calls_in_half_open=2
)


class Counted:
    """The dependency call, counting how often it was really attempted."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.client, self.url, self.attempts = client, url, 0

    def __call__(self) -> int:
        self.attempts += 1
        response = self.client.get(self.url, timeout=effective_timeout())
        response.raise_for_status()
        return response.status_code


def test_connection_refused_trips_fails_fast_and_recovers(fault_server: Any) -> None:
    clock = FakeClock()
    bus = EventBus(log=False)
    policy = Policy(
        "outage-refused",
        kind="tool",
        retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.01),
        breaker=BREAKER,
        registry=BreakerRegistry(clock=clock),
        events=bus,
        clock=clock,
        sync_sleep=clock.advance,
    )
    assert policy.breaker is not None
    with httpx.Client(timeout=5.0) as client:
        call = Counted(client, fault_server.url)
        assert policy.call(call) == 200

        fault_server.stop()  # the dependency's network is blocked: connections refused
        with pytest.raises(httpx.ConnectError) as info:
            policy.call(call)
        assert gave_up(info.value) is not None
        with pytest.raises(CircuitOpen):  # the 4th failure in the window trips it mid-retry
            policy.call(call)
        assert policy.breaker.state is BreakerState.OPEN
        tried = call.attempts

        started = time.monotonic()
        for _ in range(100):
            with pytest.raises(CircuitOpen):
                policy.call(call)
        per_call = (time.monotonic() - started) / 100
        assert call.attempts == tried, "an open breaker must not let calls reach the network"
        assert per_call < 0.005, f"rejections should be immediate, took {per_call * 1e3:.2f} ms"

        fault_server.start()  # the dependency is back, on the same address
        with pytest.raises(CircuitOpen):
            policy.call(call)  # still open until its wait has passed
        clock.advance(BREAKER.wait_duration_in_open)
        hits = fault_server.hits
        for _ in range(BREAKER.permitted_calls_in_half_open):
            assert policy.call(call) == 200  # trial calls, through half-open
        assert policy.breaker.state is BreakerState.CLOSED
        assert fault_server.hits == hits + BREAKER.permitted_calls_in_half_open
        assert policy.call(call) == 200

    moves = [(e["from_state"], e["to_state"]) for e in bus.recent("breaker_transition")]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_hanging_dependency_trips_fails_fast_and_recovers(fault_server: Any) -> None:
    clock = FakeClock()
    policy = Policy(
        "outage-hang",
        timeout=0.3,
        retry=None,
        breaker=BREAKER,
        registry=BreakerRegistry(clock=clock),
        clock=clock,
    )
    assert policy.breaker is not None
    fault_server.default = "hang"
    async with httpx.AsyncClient(timeout=30.0) as client:
        attempts = 0

        async def fetch() -> int:
            nonlocal attempts
            attempts += 1
            response = await client.get(fault_server.url)
            response.raise_for_status()
            return response.status_code

        results = await asyncio.gather(
            *(policy.acall(fetch) for _ in range(BREAKER.minimum_calls)), return_exceptions=True
        )
        assert all(isinstance(r, DeadlineExceeded) for r in results), results
        assert policy.breaker.state is BreakerState.OPEN

        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(50):
            with pytest.raises(CircuitOpen):
                await policy.acall(fetch)
        assert attempts == BREAKER.minimum_calls  # none of the 50 reached the network
        assert (loop.time() - started) / 50 < 0.005

        fault_server.default = 200  # the dependency answers again
        fault_server.release_hangs()
        clock.advance(BREAKER.wait_duration_in_open)
        for _ in range(BREAKER.permitted_calls_in_half_open):
            assert await policy.acall(fetch) == 200
        assert policy.breaker.state is BreakerState.CLOSED
