"""Observability: structured logs, metrics, readiness, alert rules, tracing.

See ``docs/observability.md``. Everything here is layer 0: the HTTP server,
notifiers, dashboard and the log store (which keeps its tables through the
database kernel, :mod:`stalwart.db`, a layer above this one) live in
:mod:`stalwart.server`.
"""

from stalwart.observe import _catalog as catalog
from stalwart.observe._alerts import (
    AlertEvaluator,
    AlertNotice,
    AlertRule,
    Threshold,
    default_rules,
    load_rules,
    prometheus_rules,
    promql,
)
from stalwart.observe._capture import LineWriter, OutputPipe, capture_std_streams
from stalwart.observe._degrade import Degradations
from stalwart.observe._events import Event, EventBus, Subscription
from stalwart.observe._health import CheckResult, Readiness, ReadinessReport
from stalwart.observe._levels import EVENT_LEVELS, event_level
from stalwart.observe._logging import (
    COMMON_FIELDS,
    add_log_sink,
    configure_logging,
    get_logger,
    ingest_line,
    ingest_redacted,
    log_context,
    set_redactor,
)
from stalwart.observe._logquery import LEVELS, LogQuery, levels_from, parse_since
from stalwart.observe._metrics import REGISTRY
from stalwart.observe._procmetrics import ProcessCollector, sample_process
from stalwart.observe._ship import MetricShipper, apply_samples, forget_source
from stalwart.observe._tracing import (
    SPAN_EVENTS,
    AttrValue,
    HeldSpan,
    attach_traceparent,
    configure_tracing,
    current_trace_id,
    current_traceparent,
    hold_span,
    preload_tracing,
    set_span_attributes,
    set_span_error,
    shutdown_tracing,
    start_span,
    trace_events,
    tracing_enabled,
)

__all__ = [
    "COMMON_FIELDS",
    "EVENT_LEVELS",
    "REGISTRY",
    "SPAN_EVENTS",
    "AttrValue",
    "AlertEvaluator",
    "AlertNotice",
    "AlertRule",
    "CheckResult",
    "Degradations",
    "Event",
    "EventBus",
    "HeldSpan",
    "LineWriter",
    "LEVELS",
    "LogQuery",
    "MetricShipper",
    "OutputPipe",
    "ProcessCollector",
    "Readiness",
    "ReadinessReport",
    "Subscription",
    "Threshold",
    "add_log_sink",
    "apply_samples",
    "forget_source",
    "capture_std_streams",
    "catalog",
    "configure_logging",
    "default_rules",
    "event_level",
    "get_logger",
    "ingest_line",
    "ingest_redacted",
    "load_rules",
    "log_context",
    "levels_from",
    "parse_since",
    "prometheus_rules",
    "promql",
    "sample_process",
    "set_redactor",
    "attach_traceparent",
    "configure_tracing",
    "current_trace_id",
    "current_traceparent",
    "hold_span",
    "preload_tracing",
    "set_span_attributes",
    "set_span_error",
    "shutdown_tracing",
    "start_span",
    "trace_events",
    "tracing_enabled",
]
