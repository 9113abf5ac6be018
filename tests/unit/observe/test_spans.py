"""The span recorder and its batch exporter: export off the call path, a bounded queue
whose drops are counted, the SDK's sampler decisions kept.

The exporter here is the SDK's in-memory one behind a gate the test opens, so what
the export thread is doing at each step is known without sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, TraceIdRatioBased

from stalwart.observe import REGISTRY, _tracing, attach_traceparent, current_traceparent
from stalwart.observe import start_span as span
from stalwart.observe._spans import BatchExport, ExportNow

UNSAMPLED_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


class GatedExporter(InMemorySpanExporter):
    """Records the exporting thread's name; each export waits until ``gate`` opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.threads: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().export(spans)


def _count(outcome: str) -> float:
    return REGISTRY.get_sample_value("stalwart_trace_spans_total", {"outcome": outcome}) or 0.0


@pytest.fixture
def batched() -> Iterator[tuple[GatedExporter, BatchExport]]:
    exporter = GatedExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    env = {  # a full batch (2) wakes the thread; the schedule alone never would
        "OTEL_BSP_MAX_QUEUE_SIZE": "2",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    processor = BatchExport(exporter, provider, env)
    _tracing._STATE = _tracing._Tracing(provider, processor)
    yield exporter, processor
    _tracing._STATE = None
    exporter.gate.set()
    processor.shutdown()


def test_spans_are_exported_by_the_export_thread_and_a_full_queue_drops_and_counts(
    batched,
) -> None:
    exporter, processor = batched
    dropped, exported = _count("dropped"), _count("exported")
    for name in ("a", "b"):  # a full batch: the thread takes it and waits at the gate
        with span(name):
            pass
    assert exporter.entered.wait(10)
    for name in ("c", "d", "e"):  # the queue holds 2: "e" finds it full
        with span(name):
            pass
    assert _count("dropped") - dropped == 1
    assert not exporter.get_finished_spans()  # nothing was exported on this thread
    exporter.gate.set()
    processor.shutdown()  # exports what is queued, then stops
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["a", "b", "c", "d"]
    assert set(exporter.threads) == {"stalwart-span-export"}
    assert _count("exported") - exported == 4
    with span("after"):  # after shutdown: dropped and counted, never raised
        pass
    assert _count("dropped") - dropped == 2


@pytest.fixture
def sampled_by() -> Iterator[object]:
    state: list[_tracing._Tracing] = []

    def use(sampler: object) -> InMemorySpanExporter:
        exporter = InMemorySpanExporter()
        provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)  # type: ignore[arg-type]
        state.append(_tracing._Tracing(provider, ExportNow(exporter, provider)))
        _tracing._STATE = state[-1]
        return exporter

    yield use
    _tracing._STATE = None


def test_the_sdk_sampler_decides_and_an_unsampled_parent_is_carried_on(sampled_by) -> None:
    # the default sampler (parent-based): an unsampled caller's trace stays unsampled,
    # and its context still propagates, flagged 00
    exporter = sampled_by(None)
    with attach_traceparent(UNSAMPLED_PARENT), span("task") as s:
        assert s is not None and not s.is_recording()
        carried = current_traceparent()
    assert carried.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and carried.endswith("-00")
    assert not exporter.get_finished_spans()
    # any other sampler is asked: always_off records nothing, ratio 1.0 everything
    exporter = sampled_by(ALWAYS_OFF)
    with span("task"):
        pass
    assert not exporter.get_finished_spans()
    exporter = sampled_by(TraceIdRatioBased(1.0))
    with span("task", {"a": 1}) as s:
        assert s is not None
        s.add_event("retry", {"attempt": 2})
    (done,) = exporter.get_finished_spans()
    assert dict(done.attributes or {}) == {"a": 1}
    assert [(e.name, dict(e.attributes or {})) for e in done.events] == [("retry", {"attempt": 2})]
