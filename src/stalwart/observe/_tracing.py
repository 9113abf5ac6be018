"""Tracing: OpenTelemetry spans named after the GenAI semantic conventions.

Tracing is off until :func:`configure_tracing` turns it on, which it does only when
the standard OpenTelemetry environment asks for an exporter:
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set,
``OTEL_TRACES_EXPORTER`` is unset or ``otlp``, and ``OTEL_SDK_DISABLED`` is not
``true``. Off, every function here returns at once (one global read) and the
OpenTelemetry packages are not even imported.

On, the process gets its own ``TracerProvider`` (sampler, ids, resource) and the
SDK's OTLP/HTTP span exporter, so every ``OTEL_*`` variable the SDK reads applies:
endpoint, ``OTEL_EXPORTER_OTLP_HEADERS`` (auth), timeout, compression,
certificates, ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``, the sampler
(``OTEL_TRACES_SAMPLER``), the span limits and the batch settings (``OTEL_BSP_*``).
Spans are recorded by :mod:`stalwart.observe._spans` (37 us per model call
against the SDK tracer's 139 us, measured there) and exported in batches from one
background thread with a bounded queue; drops are counted. Each agent process
configures its own (an export thread does not survive ``fork``) and flushes it
when it stops.

Context crosses process boundaries as a W3C ``traceparent`` string
(:func:`current_traceparent`, :func:`attach_traceparent`): the runtime carries it
on every call and cast, and the HTTP API takes it from the request header.

:func:`trace_events` turns a process's resilience events (retries, breaker
rejections and transitions, give-ups, fallbacks) into span events on the span
that is current when they are emitted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from stalwart.observe._events import Event, EventBus, Subscription
from stalwart.observe._logging import get_logger, redact_text

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from stalwart.observe._spans import BatchExport, ExportNow

__all__ = [
    "SPAN_EVENTS",
    "AttrValue",
    "HeldSpan",
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

_log = get_logger("stalwart.tracing")

AttrValue = str | bool | int | float | tuple[str, ...]
"""What a span attribute may hold (OpenTelemetry's attribute values stalwart uses)."""

SPAN_EVENTS: frozenset[str] = frozenset(
    {
        "dependency_retry",
        "dependency_rejected",
        "dependency_gave_up",
        "breaker_transition",
        "model_failed_over",
        "model_fallback",
        "tool_call_denied",
        "tool_call_held",
        "tool_call_refused",
    }
)
"""The events :func:`trace_events` records on the current span."""


class _Tracing:
    """The live configuration of this process (None in ``_STATE`` means off).

    ``processor`` receives every ended, sampled span: :class:`~stalwart.observe._spans.
    BatchExport` in a process, :class:`~stalwart.observe._spans.ExportNow` in tests.
    """

    def __init__(self, provider: TracerProvider, processor: BatchExport | ExportNow) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from stalwart.observe._spans import Recorder

        self.provider = provider
        self.processor = processor
        self.recorder = Recorder(provider, processor.on_end)
        self.trace = trace
        self.context = context
        self.propagator = TraceContextTextMapPropagator()
        self.kinds = {
            "internal": trace.SpanKind.INTERNAL,
            "client": trace.SpanKind.CLIENT,
            "server": trace.SpanKind.SERVER,
            "producer": trace.SpanKind.PRODUCER,
            "consumer": trace.SpanKind.CONSUMER,
        }

    def shutdown(self) -> None:
        self.processor.shutdown()
        self.provider.shutdown()


_STATE: _Tracing | None = None
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _wanted(env: Mapping[str, str]) -> str | None:
    """Why tracing stays off under ``env`` (None: it should be on)."""
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return "OTEL_SDK_DISABLED is true"
    exporters = [e.strip() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    if "otlp" not in exporters:
        return f"OTEL_TRACES_EXPORTER={env.get('OTEL_TRACES_EXPORTER')!r} names no otlp exporter"
    if not (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return "no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        return f"OTLP protocol {protocol!r}: stalwart exports traces over http/protobuf only"
    return None


def preload_tracing(env: Mapping[str, str] | None = None) -> None:
    """Import the SDK now if the environment will turn tracing on (the fork server
    calls it, so agent processes do not each spend ~0.5 s importing it)."""
    if _wanted(os.environ if env is None else env) is None:
        with contextlib.suppress(ImportError):
            import opentelemetry.exporter.otlp.proto.http.trace_exporter
            import opentelemetry.sdk.trace.export  # noqa: F401

        import stalwart.observe._spans  # noqa: F401


def configure_tracing(
    *,
    service_name: str = "stalwart",
    instance: str | None = None,
    env: Mapping[str, str] | None = None,
) -> bool:
    """Turn tracing on in this process if the environment asks for it; True if on.

    ``service_name`` is used when ``OTEL_SERVICE_NAME`` is unset; ``instance``
    becomes ``service.instance.id``. Calling it again replaces the provider (the
    old one is flushed and shut down first).
    """
    global _STATE  # noqa: PLW0603 - one provider per process, read lock-free on the hot path
    env = os.environ if env is None else env
    why = _wanted(env)
    if why is not None:
        shutdown_tracing()
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        from stalwart.observe._spans import BatchExport
    except ImportError as exc:  # a broken install: say so, never fail the process for it
        _log.warning(
            "tracing_unavailable",
            error=f"{exc}; reinstall stalwart (opentelemetry-sdk and "
            "opentelemetry-exporter-otlp-proto-http are its dependencies)",
        )
        return False
    attributes: dict[str, AttrValue] = {}
    if not env.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service_name
    if instance:
        attributes["service.instance.id"] = instance
    shutdown_tracing()
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    _STATE = _Tracing(provider, BatchExport(OTLPSpanExporter(), provider, env))
    return True


def shutdown_tracing() -> None:
    """Export what is buffered (bounded by the exporter's timeout) and turn tracing off.

    It blocks: from a coroutine, run it with ``asyncio.to_thread``.
    """
    global _STATE
    state, _STATE = _STATE, None
    if state is not None:
        state.shutdown()


def tracing_enabled() -> bool:
    return _STATE is not None


def start_span(
    name: str,
    attributes: Mapping[str, AttrValue] | None = None,
    *,
    kind: str = "internal",
    parent: str = "",
) -> contextlib.AbstractContextManager[Span | None]:
    """A span made current for the ``with`` block (``None`` when tracing is off).

    ``parent`` is a ``traceparent`` to start under instead of the current span.
    An exception leaving the block sets ``error.type`` and an error status whose
    description went through the log redactor (no raw message, no stack).
    """
    state = _STATE
    if state is None:
        return _OFF
    return _span(state, name, attributes, kind, parent)


class HeldSpan:
    """A span open across awaits and ``yield`` s but current only inside :meth:`current`
    blocks: a streamed model call, whose consumer's code between two deltas is not part
    of it (and whose generator may be closed from another context, where detaching a
    span made current by ``__enter__`` would fail)."""

    __slots__ = ("_state", "span")

    def __init__(self, state: _Tracing, span: Span) -> None:
        self._state = state
        self.span = span

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Make the span current for the block (it must not ``yield`` inside)."""
        state = self._state
        token = state.context.attach(state.trace.set_span_in_context(self.span))
        try:
            yield
        finally:
            state.context.detach(token)

    def end(self, exc: BaseException | None = None) -> None:
        """End the span (once); ``exc`` marks it failed as :func:`start_span` would."""
        if exc is not None:
            set_span_error(self.span, type(exc).__name__, f"{type(exc).__name__}: {exc}")
        self.span.end()


def hold_span(
    name: str, attributes: Mapping[str, AttrValue] | None = None, *, kind: str = "internal"
) -> HeldSpan | None:
    """A span under the current one, started now and not made current (None when off):
    see :class:`HeldSpan`."""
    state = _STATE
    if state is None:
        return None
    return HeldSpan(state, state.recorder.start(name, attributes, state.kinds[kind], None))


class _span:  # lower case: a ``with`` block, like contextlib's; a class, not a generator (cost)
    __slots__ = ("_span", "_state", "_token")

    def __init__(
        self,
        state: _Tracing,
        name: str,
        attributes: Mapping[str, AttrValue] | None,
        kind: str,
        parent: str,
    ) -> None:
        ctx = state.propagator.extract({"traceparent": parent}) if parent else None
        self._state = state
        self._span = state.recorder.start(name, attributes, state.kinds[kind], ctx)
        self._token: object = None

    def __enter__(self) -> Span:
        state = self._state
        self._token = state.context.attach(state.trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if exc is not None:
            # never the exception's raw message and stack (they may hold PII): the
            # error's type, and its message through the redactor
            span.set_attribute("error.type", type(exc).__name__)
            description = redact_text(f"{type(exc).__name__}: {exc}")[:300]
            trace = self._state.trace
            span.set_status(trace.Status(trace.StatusCode.ERROR, description))
        self._state.context.detach(self._token)
        span.end()


def set_span_attributes(span: Span | None, attributes: Mapping[str, AttrValue | None]) -> None:
    """Set the non-None ``attributes`` on ``span`` (nothing when tracing is off)."""
    if span is not None:
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def set_span_error(span: Span | None, error_type: str, description: str = "") -> None:
    """Mark ``span`` failed: ``error.type`` and an error status (nothing when off)."""
    state = _STATE
    if span is None or state is None:
        return
    span.set_attribute("error.type", error_type)
    text = redact_text(description)[:300] if description else None
    span.set_status(state.trace.Status(state.trace.StatusCode.ERROR, text))


def current_traceparent() -> str:
    """The current span's context as a W3C ``traceparent`` ("" when none or off)."""
    state = _STATE
    if state is None:
        return ""
    carrier: dict[str, str] = {}
    state.propagator.inject(carrier)
    return carrier.get("traceparent", "")


def current_trace_id() -> str:
    """The current trace's id in hex ("" when none or off), for log correlation."""
    state = _STATE
    if state is None:
        return ""
    span_context = state.trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


@contextlib.contextmanager
def _attached(state: _Tracing, traceparent: str) -> Iterator[None]:
    token = state.context.attach(state.propagator.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        state.context.detach(token)


def attach_traceparent(traceparent: str) -> contextlib.AbstractContextManager[None]:
    """Make ``traceparent`` (a remote parent) current for the ``with`` block.

    A malformed value is ignored (the W3C rule: start a new trace).
    """
    state = _STATE
    if state is None or not traceparent:
        return _OFF
    return _attached(state, traceparent)


def _as_attr(value: Any) -> AttrValue:
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


def _record(event: Event) -> None:
    state = _STATE
    if state is None or event.name not in SPAN_EVENTS:
        return
    span = state.trace.get_current_span()
    if span.is_recording():
        span.add_event(
            event.name, {k: _as_attr(v) for k, v in event.fields.items() if v is not None}
        )


def trace_events(bus: EventBus) -> Subscription:
    """Record ``bus``'s resilience and guard events (:data:`SPAN_EVENTS`) as span events.

    The bus calls subscribers inline, so each event lands on the span current
    where it was emitted: a retry on its model-call span, a fallback on the
    agent step. Off, each event costs one global read.
    """
    return bus.subscribe(_record)
