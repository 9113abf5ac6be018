"""Retries, breaker rejections and fallbacks become span events, on the real client path.

The sim faults the primary; the chain (built as an agent builds it, one event bus for
the chain and its clients) runs inside an ``agent_step`` span; the SDK's in-memory
exporter collects what would go to the collector.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stalwart.llm import Message, ModelRequest, model_chain
from stalwart.observe import EventBus, _tracing, start_span, trace_events
from stalwart.observe._spans import ExportNow
from stalwart.resilience import BreakerConfig

from .conftest import FAST_RETRY, providers  # FAST_RETRY: 3 attempts, ms backoff

ASK = ModelRequest(messages=(Message("user", "What is the capital of Spain?"),), max_tokens=64)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    _tracing._STATE = _tracing._Tracing(provider, ExportNow(exporter, provider))
    yield exporter
    _tracing._STATE = None


async def test_retries_rejections_and_fallbacks_are_span_events(sim, spans):
    bus = EventBus(log=False)
    trace_events(bus)
    # two failures open the primary's breaker; the third call is rejected without a request
    breaker = BreakerConfig(window_size=2, minimum_calls=2, wait_duration_in_open=60.0)
    chain = model_chain(
        "main",
        ["sim:strong", "sim:weak"],
        providers=providers(sim),
        events=bus,
        retry=FAST_RETRY,
        breaker=breaker,
    )
    sim.world.set_fault("strong", status=500)
    try:
        for _ in range(2):
            with start_span("agent_step helper"):
                response = await chain.complete(ASK, timeout=10)
            assert response.model == "sim:weak"
    finally:
        await chain.aclose()
    finished = spans.get_finished_spans()
    steps = [s for s in finished if s.name == "agent_step helper"]
    strong = [s for s in finished if s.name == "chat strong"]
    weak = [s for s in finished if s.name == "chat weak"]
    assert len(steps) == len(strong) == len(weak) == 2
    assert all(s.parent.span_id in {p.context.span_id for p in steps} for s in strong + weak)
    # first call: the primary retried once, its second failure opened the breaker, which
    # ended the retries (events on its chat span); then the chain fell back
    first = [e.name for e in strong[0].events]
    assert first == ["dependency_retry", "breaker_transition", "dependency_gave_up"]
    assert strong[0].attributes["error.type"]
    step_events = [e.name for e in steps[0].events]
    assert step_events == ["model_failed_over", "model_fallback"]
    # second call: the open breaker rejected the primary at once
    assert "dependency_rejected" in [e.name for e in strong[1].events]
    assert weak[0].attributes["gen_ai.usage.output_tokens"] > 0
