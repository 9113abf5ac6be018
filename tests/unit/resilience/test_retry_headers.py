"""The provider SDKs' retry headers (issue 18): ``x-should-retry``, ``retry-after-ms``,
``Retry-After: 0``, read from real httpx responses and honoured by the retry loop."""

from __future__ import annotations

import httpx
import pytest

from stalwart.resilience import (
    GaveUp,
    Policy,
    RetryPolicy,
    classify,
    classify_http_status,
    gave_up,
    retry_after_from_headers,
)
from stalwart.testing import FakeClock

NOW = 1_700_000_000.0


def status_error(status: int, **headers: str) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://api.example.test/v1/chat")
    response = httpx.Response(status, headers=headers, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


@pytest.mark.parametrize(
    ("status", "header", "retryable"),
    [
        (400, "true", True),  # the server says this one is worth another try
        (503, "false", False),  # ...or that this one is not
        (429, "FALSE", False),
        (503, "maybe", True),  # anything else: the status decides
        (400, "", False),
    ],
)
def test_x_should_retry_overrides_the_status(status: int, header: str, retryable: bool) -> None:
    cls = classify(status_error(status, **{"x-should-retry": header}), now=NOW)
    assert cls.retryable is retryable and cls.reason == f"http_{status}"


def test_retry_after_ms_comes_first() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "30"}
    assert retry_after_from_headers(headers, now=NOW) == 1.5
    assert classify_http_status(429, headers, now=NOW).retry_after == 1.5


def test_an_invalid_retry_after_ms_falls_back_to_retry_after() -> None:
    assert retry_after_from_headers({"Retry-After-Ms": "soon", "Retry-After": "2"}, now=NOW) == 2.0
    assert retry_after_from_headers({"retry-after-ms": "-5"}, now=NOW) is None


def test_retry_headers_are_read_whatever_their_case() -> None:
    assert retry_after_from_headers({"RETRY-AFTER": "3"}, now=NOW) == 3.0
    assert classify_http_status(400, {"X-Should-Retry": "true"}).retryable


def test_a_permanent_status_made_retryable_reads_its_wait() -> None:
    cls = classify_http_status(400, {"x-should-retry": "true", "retry-after-ms": "250"}, now=NOW)
    assert cls.retryable and cls.retry_after == 0.25


def _run(clock: FakeClock, errors: list[Exception], **retry: object) -> list[float]:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    def call() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    runner = Policy(
        "sdk",
        kind="model",
        retry=RetryPolicy(**retry),
        breaker=None,
        clock=clock,
        sync_sleep=sleep,  # type: ignore[arg-type]
    )
    assert runner.call(call) == "ok"
    return waits


def test_the_loop_waits_what_retry_after_ms_asks() -> None:
    waits = _run(FakeClock(), [status_error(429, **{"retry-after-ms": "750"})], jitter=False)
    assert waits == [0.75]


def test_retry_after_zero_uses_the_backoff_not_an_immediate_retry() -> None:
    errors: list[Exception] = [status_error(503, **{"retry-after": "0"})]
    waits = _run(FakeClock(), errors, base=0.2, jitter=False)
    assert waits == [0.2]


def test_x_should_retry_true_makes_the_loop_retry_a_400() -> None:
    waits = _run(FakeClock(), [status_error(400, **{"x-should-retry": "true"})], jitter=False)
    assert len(waits) == 1


def test_x_should_retry_false_stops_at_once_with_the_sdk_error() -> None:
    clock = FakeClock()
    error = status_error(503, **{"x-should-retry": "false"})
    runner = Policy("sdk", kind="model", retry=RetryPolicy(), breaker=None, clock=clock)

    def call() -> str:
        raise error

    with pytest.raises(httpx.HTTPStatusError) as info:
        runner.call(call)
    assert info.value is error and gave_up(error) is None


def test_the_last_http_error_is_reraised_with_its_attempts() -> None:
    clock = FakeClock()
    errors = [status_error(503), status_error(503)]
    last = errors[-1]

    def call() -> str:
        raise errors.pop(0)

    runner = Policy(
        "sdk",
        kind="model",
        retry=RetryPolicy(max_attempts=2),
        breaker=None,
        clock=clock,
        sync_sleep=clock.advance,
    )
    with pytest.raises(httpx.HTTPStatusError) as info:
        runner.call(call)
    assert info.value is last and gave_up(last) == GaveUp("sdk", 2, "attempts")
