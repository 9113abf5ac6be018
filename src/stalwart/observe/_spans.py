"""The span recorder behind :mod:`stalwart.observe._tracing` (imported only when tracing is on).

Why not the SDK's ``Tracer``: one SDK span with stalwart's model-call attributes, made
current and ended into the SDK's ``BatchSpanProcessor``, costs 25-30 us of the calling
thread's CPU in a warm loop (every attribute value validated through ABC ``isinstance``
checks, a lock per attribute, a ``ReadableSpan`` copy and an ``os.getpid`` per ``end``);
here a span is a slotted object holding plain values, about 5 us. End to end
(``bench/models.py``: model calls to the sim, tracing on and off alternating, p50 of
the paired CPU differences, on a loaded 2-core machine) tracing added 139 us with the
SDK's tracer and adds 37 us with this one. The export thread turns each span into the
SDK's ``ReadableSpan`` (applying the SDK's span limits) and hands the batch to the SDK's
OTLP exporter. What stays the SDK's: the sampler (``OTEL_TRACES_SAMPLER``), the id
generator, the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), the span
limits (``OTEL_*_LIMIT``), the exporter and its variables, the W3C propagator and the
context API, so a :class:`RecordingSpan` is an ``opentelemetry.trace.Span`` that
context, propagation and any OpenTelemetry code running inside it see as the current
span.

:class:`BatchExport` is the batch processor: a bounded queue (``OTEL_BSP_MAX_QUEUE_SIZE``,
2048), one daemon thread exporting batches (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, 512)
every ``OTEL_BSP_SCHEDULE_DELAY`` (5000 ms) or as soon as a batch is full. The call
path only appends to the queue; a span arriving at a full queue is dropped and counted
in ``stalwart_trace_spans_total{outcome="dropped"}`` (``exported`` and
``export_failed`` count the rest).
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

from stalwart.observe import _catalog as catalog

__all__ = ["BatchExport", "ExportNow", "Recorder", "RecordingSpan"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)


class RecordingSpan(trace.Span):
    """One span being recorded: plain values until the export thread converts them."""

    __slots__ = (
        "attributes",
        "context",
        "end_ns",
        "events",
        "kind",
        "name",
        "parent",
        "sampled",
        "sink",
        "start_ns",
        "status",
    )

    def __init__(
        self,
        name: str,
        span_context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        *,
        sink: Callable[[RecordingSpan], None] | None,
    ) -> None:
        self.name = name
        self.context = span_context
        self.parent = parent
        self.kind = kind
        self.attributes = attributes
        self.events: list[tuple[str, dict[str, Any], int]] | None = None
        self.status = _UNSET
        self.sink = sink  # None: recorded, not sampled (the sampler's RECORD_ONLY)
        self.start_ns = time.time_ns()
        self.end_ns = 0

    def end(self, end_time: int | None = None) -> None:
        if self.end_ns:
            return
        self.end_ns = end_time or time.time_ns()
        if self.sink is not None:
            self.sink(self)

    def get_span_context(self) -> SpanContext:
        return self.context

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if not self.end_ns:
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if not self.end_ns:
            self.attributes[key] = value

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self.end_ns:
            return
        if self.events is None:
            self.events = []
        self.events.append((name, dict(attributes or {}), timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        pass  # stalwart links nothing; accepted so foreign code running in a span cannot fail

    def update_name(self, name: str) -> None:
        self.name = name

    def is_recording(self) -> bool:
        return not self.end_ns

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_ns or self.status.status_code is StatusCode.OK:
            return  # the SDK's rule: OK is final
        self.status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        # never the raw message and stack (they may hold PII): the type, as an event
        self.add_event("exception", {"exception.type": type(exception).__name__}, timestamp)


class Recorder:
    """Starts spans with the SDK provider's sampler and ids; ``sink`` gets each ended one.

    With the SDK's defaults (``parentbased_always_on``, random ids), the decision and
    the ids are made inline, without the sampler's and generator's call chain: on a
    loaded machine each Python call on the call path costs cache misses, and these
    were a third of a span's calls. Any other sampler or id generator is called.
    """

    def __init__(self, provider: TracerProvider, sink: Callable[[RecordingSpan], None]) -> None:
        self.sampler = provider.sampler
        self.ids = provider.id_generator
        self.sink = sink
        default = ParentBased(ALWAYS_ON).get_description()  # type: ignore[no-untyped-call]
        self.inline = (
            self.sampler.get_description() == default and type(self.ids) is RandomIdGenerator
        )

    def start(
        self,
        name: str,
        attributes: Mapping[str, Any] | None,
        kind: SpanKind,
        parent_context: otel_context.Context | None,
    ) -> trace.Span:
        parent: SpanContext | None = trace.get_current_span(parent_context).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
        else:
            parent = None
            trace_id = _random_id(128) if self.inline else self.ids.generate_trace_id()
        if self.inline:  # ParentBased(ALWAYS_ON): a root is sampled, a child as its parent
            sampled = parent is None or parent.trace_flags.sampled
            if not sampled:
                return trace.NonRecordingSpan(
                    SpanContext(trace_id, _random_id(64), False, _UNSAMPLED, parent.trace_state)  # type: ignore[union-attr]
                )
            return RecordingSpan(
                name,
                SpanContext(
                    trace_id,
                    _random_id(64),
                    False,
                    _SAMPLED,
                    parent.trace_state if parent is not None else None,
                ),
                parent,
                kind,
                dict(attributes) if attributes else {},
                sink=self.sink,
            )
        result = self.sampler.should_sample(parent_context, trace_id, name, kind, attributes)
        sampled = result.decision.is_sampled()  # type: ignore[no-untyped-call]
        span_context = SpanContext(
            trace_id,
            self.ids.generate_span_id(),
            False,
            _SAMPLED if sampled else _UNSAMPLED,
            result.trace_state,
        )
        if not result.decision.is_recording():  # type: ignore[no-untyped-call]
            return trace.NonRecordingSpan(span_context)
        return RecordingSpan(
            name,
            span_context,
            parent,
            kind,
            dict(result.attributes) if result.attributes else {},
            sink=self.sink if sampled else None,
        )


def _random_id(bits: int) -> int:
    """What the SDK's ``RandomIdGenerator`` gives: random bits, never 0 (invalid)."""
    value = random.getrandbits(bits)
    while not value:
        value = random.getrandbits(bits)
    return value


class _Convert:
    """RecordingSpans into the SDK's ReadableSpans (on the export thread)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.attributes import BoundedAttributes

        self.bounded = BoundedAttributes
        self.resource = provider.resource
        self.limits = SpanLimits()
        self.scope = InstrumentationScope("stalwart")

    def __call__(self, span: RecordingSpan) -> ReadableSpan:
        limits = self.limits
        events: Sequence[Event] = ()
        if span.events:
            kept = span.events if limits.max_events is None else span.events[: limits.max_events]
            events = tuple(
                Event(
                    name,
                    self.bounded(
                        limits.max_event_attributes, attrs, True, limits.max_attribute_length
                    ),
                    ts,
                )
                for name, attrs, ts in kept
            )
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=self.resource,
            attributes=self.bounded(
                limits.max_span_attributes, span.attributes, True, limits.max_span_attribute_length
            ),
            events=events,
            kind=span.kind,
            status=span.status,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=self.scope,
        )


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(env.get(name, "") or default)
    except ValueError:
        return default
    return value if value > 0 else default


class ExportNow:
    """Hands each ended span to ``exporter`` at once, on the caller's thread (for tests)."""

    def __init__(self, exporter: SpanExporter, provider: TracerProvider) -> None:
        self.exporter = exporter
        self.convert = _Convert(provider)

    def on_end(self, span: RecordingSpan) -> None:
        self.exporter.export([self.convert(span)])

    def flush(self) -> None:
        pass  # nothing is ever queued

    def shutdown(self) -> None:
        self.exporter.shutdown()


class BatchExport:
    """Bounded queue, one export thread, drops counted (see the module docstring)."""

    def __init__(
        self,
        exporter: SpanExporter,
        provider: TracerProvider,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.exporter = exporter
        self.convert = _Convert(provider)
        self.max_queue = _env_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        self.batch = min(self.max_queue, _env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512))
        self.delay = _env_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self.timeout = _env_int(env, "OTEL_BSP_EXPORT_TIMEOUT", 30000) / 1000
        self._queue: collections.deque[RecordingSpan] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._lock = threading.Lock()  # one export at a time (the thread's or a flush)
        self._dropped = catalog.TRACE_SPANS.labels("dropped")
        self._thread = threading.Thread(target=self._run, name="stalwart-span-export", daemon=True)
        self._thread.start()

    def on_end(self, span: RecordingSpan) -> None:
        """The call path's whole share of exporting: one append (or a counted drop)."""
        queue = self._queue
        if len(queue) >= self.max_queue or self._stopping:
            self._dropped.inc()
            return
        queue.append(span)
        if len(queue) >= self.batch and not self._wake.is_set():
            self._wake.set()

    def flush(self) -> None:
        """Export what is queued now, on the caller's thread (it blocks: the exporter's I/O)."""
        self._export()

    def _export(self) -> None:
        with self._lock:
            self._export_locked()

    def _export_locked(self) -> None:
        queue = self._queue
        while queue:
            batch = [queue.popleft() for _ in range(min(self.batch, len(queue)))]
            try:
                result = self.exporter.export([self.convert(s) for s in batch])
            except Exception:  # an exporter bug must not end the thread
                result = SpanExportResult.FAILURE
            outcome = "exported" if result is SpanExportResult.SUCCESS else "export_failed"
            catalog.TRACE_SPANS.labels(outcome).inc(len(batch))

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.delay)
            self._wake.clear()
            self._export()
        self._export()

    def shutdown(self) -> None:
        """Export what is queued (bounded by ``OTEL_BSP_EXPORT_TIMEOUT``), then stop."""
        self._stopping = True
        self._wake.set()
        self._thread.join(self.timeout)
        self.exporter.shutdown()
