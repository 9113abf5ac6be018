"""Prometheus metrics and structured events of the resilience layer.

Metrics (all in :data:`stalwart.observe.REGISTRY`):

- ``stalwart_retries_total{dependency,class}`` — a failed attempt that will be retried.
- ``stalwart_retry_give_ups_total{dependency,reason}`` — a call that stopped retrying
  (``reason``: ``attempts`` or ``deadline``).
- ``stalwart_errors_total{dependency,class}`` — every failed attempt, by class
  (``retryable/transient``…), including permanent errors.
- ``stalwart_rejections_total{dependency,reason}`` — calls refused without being made
  (``reason``: ``circuit_open`` or ``rate_limited``).
- ``stalwart_breaker_state{dependency}`` — 0 closed, 1 open, 2 half-open, 3 disabled,
  4 forced open, 5 metrics only (resilience4j's state order).
- ``stalwart_breaker_transitions_total{dependency,from_state,to_state}``.
- ``stalwart_dependency_call_duration_seconds{dependency}`` — successful call latency.

Events: with no :class:`~stalwart.observe.EventBus` given, an event is a log
line from logger ``stalwart.resilience``; with one, it is emitted on the bus
(which logs it unless built with ``log=False``) so the node can react.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from stalwart.observe import REGISTRY, EventBus, get_logger

__all__ = [
    "BREAKER_STATE",
    "BREAKER_TRANSITIONS",
    "CALL_DURATION",
    "ERRORS",
    "GIVE_UPS",
    "REJECTIONS",
    "RETRIES",
    "emit",
]

RETRIES = Counter(
    "stalwart_retries_total",
    "Failed attempts that were retried, by dependency and error class.",
    ["dependency", "class"],
    registry=REGISTRY,
)
GIVE_UPS = Counter(
    "stalwart_retry_give_ups_total",
    "Calls that stopped retrying (reason: attempts or deadline).",
    ["dependency", "reason"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "stalwart_errors_total",
    "Failed attempts of external calls, by dependency and error class.",
    ["dependency", "class"],
    registry=REGISTRY,
)
REJECTIONS = Counter(
    "stalwart_rejections_total",
    "Calls refused without being made (reason: circuit_open or rate_limited).",
    ["dependency", "reason"],
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "stalwart_breaker_state",
    "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 disabled, 4 forced open, "
    "5 metrics only.",
    ["dependency"],
    registry=REGISTRY,
)
BREAKER_TRANSITIONS = Counter(
    "stalwart_breaker_transitions_total",
    "Circuit breaker state transitions.",
    ["dependency", "from_state", "to_state"],
    registry=REGISTRY,
)
CALL_DURATION = Histogram(
    "stalwart_dependency_call_duration_seconds",
    "Duration of successful external calls (one attempt).",
    ["dependency"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)

_log = get_logger("stalwart.resilience")


def emit(events: EventBus | None, level: str, name: str, **fields: Any) -> None:
    """Report one resilience event: on ``events`` if given, else as a log line at ``level``."""
    if events is not None:
        events.emit(name, **fields)
        return
    getattr(_log, level)(name, **fields)
