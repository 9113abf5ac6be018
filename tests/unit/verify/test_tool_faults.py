"""What EH-1 and EH-2 report of a policy, and the waits EH-1 expects: the retry policy's own."""

from __future__ import annotations

import dataclasses
import random

import pytest

from stalwart.resilience import BreakerConfig, RetryPolicy
from stalwart.verify._tool_faults import (
    breaker_evidence,
    expected_wait,
    retry_evidence,
    waits_as_expected,
)

POLICIES = [
    RetryPolicy(),
    RetryPolicy(jitter=False),
    RetryPolicy(max_attempts=6, base=0.5, multiplier=3.0, cap=2.0),
    RetryPolicy(max_attempts=6, base=0.5, multiplier=3.0, cap=2.0, jitter=False),
    RetryPolicy(respect_retry_after=False),
]


def test_the_evidence_reports_the_policy_s_own_jitter() -> None:
    assert retry_evidence(RetryPolicy())["jitter"] == "full"  # type: ignore[index]
    unjittered = retry_evidence(RetryPolicy(jitter=False, base=0.2, cap=5.0))
    assert unjittered == {
        "max_attempts": 4,
        "base_s": 0.2,
        "multiplier": 2.0,
        "cap_s": 5.0,
        "jitter": "none",
        "respect_retry_after": True,
    }
    assert retry_evidence(None) is None


def test_the_breaker_evidence_names_its_settings() -> None:
    config = BreakerConfig(failure_rate_threshold=40, minimum_calls=4, wait_duration_in_open=3)
    assert breaker_evidence(config) == {
        "failure_rate_threshold_pct": 40,
        "window": config.window_size,
        "minimum_calls": 4,
        "wait_in_open_s": 3,
    }
    assert breaker_evidence(None) is None


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize("retry_after", [None, 0.0, 0.3, 30.0])
def test_every_wait_the_policy_draws_is_in_the_expected_range(policy, retry_after) -> None:
    """RetryPolicy.delay itself, 400 draws per retry: all inside expected_wait's range,
    and the range no wider than the draws (a jittered policy's reach 0 and the bound)."""
    policy = dataclasses.replace(policy, rng=random.Random(7))
    for retry in range(1, policy.max_attempts):
        lo, hi = expected_wait(policy, retry, retry_after=retry_after)
        draws = [policy.delay(retry, retry_after=retry_after) for _ in range(400)]
        assert all(lo <= d <= hi for d in draws), (lo, hi, min(draws), max(draws))
        assert min(draws) - lo < 0.02 * hi + 1e-9 and hi - max(draws) < 0.02 * hi + 1e-9


def test_an_unjittered_policy_s_gaps_must_reach_the_bound() -> None:
    unjittered = RetryPolicy(max_attempts=3, base=0.2, jitter=False)
    assert waits_as_expected([0.21, 0.43], unjittered, 0.05)
    assert not waits_as_expected([0.0, 0.43], unjittered, 0.05)  # the first retry did not wait
    assert not waits_as_expected([0.21, 0.5], unjittered, 0.05)  # past the bound + slack
    jittered = RetryPolicy(max_attempts=3, base=0.2)
    assert waits_as_expected([0.0, 0.01], jittered, 0.05)  # full jitter: 0 is a fair draw
    assert not waits_as_expected([0.3, 0.01], jittered, 0.05)


async def test_a_double_s_switch_counts_its_attempts_and_resets_or_holds_them(
    tmp_path, monkeypatch
) -> None:
    """What EH-1 … EH-3 and GD-3 do to a tool that runs its double: every attempt counted
    (as a fault proxy counts connections), reset or held unanswered while verify says so."""
    import asyncio

    from stalwart.tools._verifying import VERIFY_DIR_ENV, route
    from stalwart.verify._tool_proxy import DoubleFault

    def real(sku: str) -> str:
        raise AssertionError("the real function never runs during verification")

    def double(sku: str) -> str:
        return f"double {sku}"

    monkeypatch.setenv(VERIFY_DIR_ENV, str(tmp_path))
    fault = DoubleFault(tmp_path, "reserve")
    assert fault.stats == {"connections": 0, "resets": 0, "held": 0}
    assert route("reserve", real, double, True)(sku="A") == "double A"
    fault.set(reset=True)
    with pytest.raises(ConnectionResetError, match="reserve: connection reset"):
        route("reserve", real, double, True)
    fault.set(blackhole=True)
    held = route("reserve", real, double, True)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(held(sku="A"), 0.05)  # the tool's timeout ends it
    fault.clear()
    assert route("reserve", real, double, True)(sku="B") == "double B"
    assert fault.stats == {"connections": 4, "resets": 1, "held": 1}
    arrivals = fault.accepted
    assert len(arrivals) == 4 and arrivals == sorted(arrivals)
    assert "its double" in str(fault.describe()["faulted_at"])
    with pytest.raises(ValueError, match="latency needs a fault proxy"):
        fault.set(latency_ms=100)
    # another tool's switch is its own
    assert DoubleFault(tmp_path, "order").stats["connections"] == 0
