"""Resilience: deadlines, retries, circuit breakers, rate limits, error classification.

Every external call stalwart makes (model APIs, tools, stores, secrets
providers, notifiers) goes through a :class:`Policy`, which stacks a
:class:`Deadline`, :func:`classify`, a :class:`RetryPolicy`, a
:class:`CircuitBreaker` and optionally a rate limiter, with metrics and log
events for every retry, give-up, rejection and breaker transition. See
``docs/resilience.md``.
"""

from stalwart.resilience._breaker import (
    BREAKERS,
    BreakerConfig,
    BreakerRegistry,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    Permit,
)
from stalwart.resilience._classify import (
    HTTP_STATUS_CLASSES,
    Classification,
    Classifier,
    classify,
    classify_http_status,
    parse_retry_after,
    register_classifier,
    retry_after_from_headers,
    unregister_classifier,
)
from stalwart.resilience._deadline import (
    Deadline,
    current_deadline,
    deadline_scope,
    default_timeouts,
    effective_timeout,
    set_default_timeouts,
)
from stalwart.resilience._overrides import OVERRIDES_ENV, OverrideFile, share_overrides
from stalwart.resilience._policy import DEFAULT_BREAKER, DEFAULT_RETRY, Policy
from stalwart.resilience._ratelimit import RateLimiter, TokenBucket
from stalwart.resilience._retry import GaveUp, RetryPolicy, gave_up

__all__ = [
    "BREAKERS",
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Classification",
    "Classifier",
    "DEFAULT_BREAKER",
    "DEFAULT_RETRY",
    "Deadline",
    "GaveUp",
    "HTTP_STATUS_CLASSES",
    "OVERRIDES_ENV",
    "OverrideFile",
    "Permit",
    "Policy",
    "RateLimiter",
    "RetryPolicy",
    "TokenBucket",
    "classify",
    "classify_http_status",
    "current_deadline",
    "deadline_scope",
    "default_timeouts",
    "effective_timeout",
    "gave_up",
    "parse_retry_after",
    "register_classifier",
    "retry_after_from_headers",
    "set_default_timeouts",
    "share_overrides",
    "unregister_classifier",
]
