"""Tracing primitives: when tracing is on, context crossing, span events, model-call spans.

Spans go to the SDK's in-memory exporter here; the OTLP/HTTP path with real
processes is tests/integration/server/test_tracing.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from stalwart.errors import ModelHTTPError
from stalwart.llm import Message, ModelRequest, Usage
from stalwart.llm._trace import observed_call
from stalwart.observe import (
    EventBus,
    _tracing,
    attach_traceparent,
    configure_logging,
    configure_tracing,
    current_trace_id,
    current_traceparent,
    set_redactor,
    start_span,
    trace_events,
    tracing_enabled,
)
from stalwart.observe._spans import ExportNow
from stalwart.resilience import classify
from stalwart.runtime._messages import Call, Cast, decode_frame, encode_frame

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    _tracing._STATE = _tracing._Tracing(provider, ExportNow(exporter, provider))
    yield exporter
    _tracing._STATE = None


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            False,
        ),
    ],
)
def test_the_otel_environment_decides_whether_tracing_is_on(env, on) -> None:
    try:
        assert configure_tracing(env=env) is on
        assert tracing_enabled() is on
    finally:
        _tracing.shutdown_tracing()
    assert not tracing_enabled()


def test_off_everything_is_a_no_op() -> None:
    assert not tracing_enabled()
    with start_span("x", {"a": 1}) as span, attach_traceparent(PARENT):
        assert span is None
        assert current_traceparent() == "" and current_trace_id() == ""


def test_a_remote_parent_carried_as_traceparent_parents_the_next_span(spans) -> None:
    with attach_traceparent(PARENT), start_span("invoke_agent resolver"):
        carried = current_traceparent()
    (span,) = spans.get_finished_spans()
    assert format(span.context.trace_id, "032x") == PARENT.split("-")[1]
    assert format(span.parent.span_id, "016x") == PARENT.split("-")[2]
    # what the runtime would carry on from inside that span: same trace, this span as parent
    assert carried == f"00-{PARENT.split('-')[1]}-{format(span.context.span_id, '016x')}-01"
    # start_span(parent=...) does the same without attaching
    with start_span("task", parent=carried):
        pass
    assert spans.get_finished_spans()[-1].parent.span_id == span.context.span_id


def test_a_malformed_traceparent_starts_a_new_trace(spans) -> None:
    with attach_traceparent("00-not-a-trace"), start_span("task"):
        pass
    (span,) = spans.get_finished_spans()
    assert span.parent is None


def test_resilience_events_become_events_of_the_current_span(spans) -> None:
    bus = EventBus(log=False)
    trace_events(bus)
    with start_span("chat strong"):
        bus.emit("dependency_retry", dependency="sim:strong", attempt=1, retry_after=None)
        bus.emit("dependency_rejected", dependency="sim:strong", reason="circuit_open")
        bus.emit("task_claimed", task_id="T-1")  # not a span event
    bus.emit("dependency_retry", dependency="x", attempt=1)  # no span current: dropped
    (span,) = spans.get_finished_spans()
    assert [e.name for e in span.events] == ["dependency_retry", "dependency_rejected"]
    assert dict(span.events[0].attributes) == {"dependency": "sim:strong", "attempt": 1}


def test_a_model_call_is_a_chat_span_and_one_log_line(spans) -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    request = ModelRequest(messages=(Message("user", "hi"),), max_tokens=64)
    with observed_call("sim", "strong", "sim:strong", request) as call:
        call.answered(Usage(prompt_tokens=12, completion_tokens=7), "stop", 0.25)
    error = ModelHTTPError("503 from the sim", status_code=503, model="sim:weak")
    with pytest.raises(ModelHTTPError), observed_call("sim", "weak", "sim:weak", request):
        raise error
    ok, failed = spans.get_finished_spans()
    assert ok.name == "chat strong" and ok.kind.name == "CLIENT"
    assert dict(ok.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "sim",
        "gen_ai.request.model": "strong",
        "gen_ai.request.max_tokens": 64,
        "gen_ai.response.model": "strong",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.response.finish_reasons": ("stop",),
        "stalwart.cost_usd": 0.25,
    }
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "ModelHTTPError"
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [(x["event"], x["level"], x["outcome"]) for x in lines] == [
        ("model_call", "info", "ok"),
        ("model_call", "warning", "error"),
    ]
    assert (lines[0]["tokens_in"], lines[0]["tokens_out"], lines[0]["cost_usd"]) == (12, 7, 0.25)
    assert lines[1]["model"] == "sim:weak" and lines[1]["error_class"] == classify(error).label


def test_call_and_cast_frames_carry_the_trace_and_old_frames_still_decode() -> None:
    call = Call(ref=1, payload={"run": "T"}, timeout=2.0, trace=PARENT)
    assert decode_frame(encode_frame(call)[4:]) == call
    cast = Cast(payload={"run": "T"}, trace=PARENT)
    assert decode_frame(encode_frame(cast)[4:]) == cast
    # a frame from a node without tracing (no trace field) decodes with trace ""
    old = Call(ref=1, payload=None, timeout=1.0)
    assert decode_frame(encode_frame(old)[4:]).trace == ""


def test_a_failing_span_carries_the_error_redacted_never_raw(spans) -> None:
    set_redactor(lambda r: {k: str(v).replace("ann@example.com", "[email]") for k, v in r.items()})
    try:
        with pytest.raises(ValueError), start_span("execute_tool refund"):
            raise ValueError("no order for ann@example.com")
    finally:
        set_redactor(None)
    (span,) = spans.get_finished_spans()
    assert span.attributes["error.type"] == "ValueError"
    assert span.status.description == "ValueError: no order for [email]"
    assert not span.events  # no exception event with the raw message and stack
