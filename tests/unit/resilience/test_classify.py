from __future__ import annotations

import email.utils
import socket

import httpx
import pytest

from stalwart.errors import (
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    RateLimited,
    RetriesExhausted,
    StoreUnavailable,
)
from stalwart.resilience import (
    Classification,
    classify,
    classify_http_status,
    parse_retry_after,
    register_classifier,
    unregister_classifier,
)

NOW = 1_700_000_000.0


def http_error(status: int, headers: dict[str, str] | None = None, body: str = "") -> Exception:
    request = httpx.Request("POST", "http://dep.test/v1")
    response = httpx.Response(status, headers=headers, text=body, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (400, "permanent/transient"),
        (401, "permanent/systemic"),
        (403, "permanent/systemic"),
        (404, "permanent/transient"),
        (422, "permanent/transient"),
        (408, "retryable/transient"),
        (409, "retryable/transient"),
        (425, "retryable/transient"),
        (429, "retryable/transient"),
        (500, "retryable/transient"),
        (502, "retryable/systemic"),
        (503, "retryable/systemic"),
        (504, "retryable/transient"),
        (418, "permanent/transient"),  # other 4xx
        (599, "retryable/transient"),  # other 5xx
        (302, "permanent/transient"),  # not an error status at all
    ],
)
def test_http_status_mapping(status: int, label: str) -> None:
    result = classify(http_error(status))
    assert result.label == label
    assert result.reason == f"http_{status}"
    assert result.retryable == label.startswith("retryable")


def test_retry_after_seconds_and_http_date_are_read() -> None:
    assert classify(http_error(429, {"Retry-After": "7"}), now=NOW).retry_after == 7.0
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert classify(http_error(503, {"Retry-After": date}), now=NOW).retry_after == 30.0
    # a permanent error's Retry-After is irrelevant: we will not retry it
    assert classify(http_error(400, {"Retry-After": "7"}), now=NOW).retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 1.5 ", 1.5),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),  # in the past: go now
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP-date
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_classify_http_status_directly() -> None:
    result = classify_http_status(429, {"retry-after": "3"}, now=NOW)
    assert result == Classification("retryable", "transient", "http_429", 3.0)


@pytest.mark.parametrize(
    ("exc", "label", "reason"),
    [
        (httpx.ConnectError("refused"), "retryable/systemic", "connect_error"),
        (httpx.ConnectTimeout("slow connect"), "retryable/systemic", "connect_timeout"),
        (httpx.ReadTimeout("slow read"), "retryable/transient", "timeout"),
        (httpx.PoolTimeout("pool"), "retryable/transient", "timeout"),
        (httpx.ReadError("reset"), "retryable/transient", "network_error"),
        (httpx.RemoteProtocolError("disconnected"), "retryable/transient", "network_error"),
        (httpx.LocalProtocolError("bad request"), "permanent/systemic", "transport_misuse"),
        (httpx.UnsupportedProtocol("ftp"), "permanent/systemic", "transport_misuse"),
        (ConnectionRefusedError(111, "refused"), "retryable/systemic", "connect_error"),
        (socket.gaierror(-2, "unknown host"), "retryable/systemic", "connect_error"),
        (ConnectionResetError(104, "reset"), "retryable/transient", "network_error"),
        (BrokenPipeError(32, "pipe"), "retryable/transient", "network_error"),
        (TimeoutError(), "retryable/transient", "timeout"),
        (ValueError("a bug"), "permanent/transient", "unclassified"),
        (KeyError("x"), "permanent/transient", "unclassified"),
    ],
)
def test_transport_and_builtin_errors(exc: BaseException, label: str, reason: str) -> None:
    result = classify(exc)
    assert (result.label, result.reason) == (label, reason)


@pytest.mark.parametrize(
    ("exc", "label"),
    [
        (CircuitOpen("open", dependency="d"), "retryable/systemic"),
        (DeadlineExceeded("late"), "retryable/transient"),
        (StoreUnavailable("down"), "retryable/systemic"),
        (ConfigError("bad"), "permanent/systemic"),
        (RetriesExhausted("tried"), "permanent/transient"),
    ],
)
def test_stalwart_errors_carry_their_class(exc: BaseException, label: str) -> None:
    assert classify(exc).label == label


def test_rate_limited_carries_retry_after() -> None:
    result = classify(RateLimited("slow down", retry_after=2.5))
    assert result.retryable and result.retry_after == 2.5


@pytest.mark.parametrize(
    "exc",
    [
        http_error(400, body='{"error": {"code": "context_length_exceeded"}}'),
        http_error(400, body="This model's maximum context length is 8192 tokens"),
        RuntimeError("prompt is too long: 250000 tokens > 200000 maximum"),
    ],
)
def test_context_length_errors_are_permanent_with_fallback(exc: Exception) -> None:
    result = classify(exc)
    assert result.label == "permanent/transient"
    assert result.reason == "context_length"
    assert result.fallback


def test_a_500_mentioning_context_is_still_a_server_error() -> None:
    assert classify(http_error(500, body="context window service crashed")).reason == "http_500"


class SdkStatusError(Exception):
    """Shaped like openai.APIStatusError: status_code plus a response with headers."""

    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(f"status {status_code}")
        self.status_code = status_code
        self.response = httpx.Response(status_code, headers=headers)


def test_sdk_style_errors_are_classified_by_duck_typing() -> None:
    result = classify(SdkStatusError(429, {"retry-after": "4"}), now=NOW)
    assert result.reason == "http_429" and result.retry_after == 4.0
    assert classify(SdkStatusError(401, {})).label == "permanent/systemic"


def test_user_classifiers_win_newest_first_and_can_be_removed() -> None:
    class QuotaError(Exception):
        pass

    assert classify(QuotaError()).reason == "unclassified"

    @register_classifier
    def quota(exc: BaseException) -> Classification | None:
        if isinstance(exc, QuotaError):
            return Classification("retryable", "systemic", "quota", retry_after=60)
        return None

    def override(exc: BaseException) -> Classification | None:
        return Classification("permanent", "systemic", "override") if "x" in str(exc) else None

    register_classifier(override)
    try:
        assert classify(QuotaError()).reason == "quota"
        assert classify(QuotaError("x")).reason == "override"
        assert classify(ValueError("y")).reason == "unclassified"  # both passed
    finally:
        unregister_classifier(quota)
        unregister_classifier(override)
    assert classify(QuotaError()).reason == "unclassified"


def test_a_failing_classifier_is_skipped_not_fatal() -> None:
    def broken(exc: BaseException) -> Classification | None:
        raise RuntimeError("classifier bug")

    register_classifier(broken)
    try:
        assert classify(http_error(503)).reason == "http_503"
    finally:
        unregister_classifier(broken)


def test_a_token_rate_limit_is_not_a_context_length_error() -> None:
    exc = http_error(429, {"Retry-After": "1"}, body="Rate limit reached: too many tokens per min")
    result = classify(exc, now=NOW)
    assert result.reason == "http_429" and result.retryable and not result.fallback


def test_a_413_saying_so_is_a_context_length_error() -> None:
    assert classify(http_error(413, body="prompt is too long")).reason == "context_length"


def test_an_unknown_wrapper_takes_the_class_of_its_explicit_cause() -> None:
    class ToolFailed(Exception):
        pass

    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except ConnectionRefusedError as cause:
            raise ToolFailed("lookup failed") from cause
    except ToolFailed as wrapped:
        result = classify(wrapped)
    assert (result.label, result.reason) == ("retryable/systemic", "connect_error")
    # an implicit context (raised while handling) is not a cause: it proves nothing
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except ConnectionRefusedError:
            raise ToolFailed("bug in the handler") from None
    except ToolFailed as unrelated:
        assert classify(unrelated).reason == "unclassified"
