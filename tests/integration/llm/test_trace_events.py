"""Retries, breaker rejections and fallbacks become span events, on the real client path.

The sim faults the primary; the chain (built as an agent builds it, one event bus for
the chain and its clients) runs inside an ``agent_step`` span; the SDK's in-memory
exporter collects what would go to the collector.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from stalwart.errors import BadModelResponse
from stalwart.llm import (
    Message,
    ModelRequest,
    Price,
    PriceTable,
    Provider,
    model_chain,
    model_client,
)
from stalwart.llm.sim import SimServer
from stalwart.observe import (
    EventBus,
    _tracing,
    configure_logging,
    current_traceparent,
    start_span,
    trace_events,
)
from stalwart.observe._spans import ExportNow
from stalwart.resilience import BreakerConfig, classify

from .conftest import FAST_RETRY, providers  # FAST_RETRY: 3 attempts, ms backoff


def _providers(sim: SimServer) -> dict[str, Provider]:
    """The sim's three wires: Chat Completions, the Responses API (self-hosted: no price
    needed) and Anthropic Messages."""
    return {
        **providers(sim),
        "simR": Provider(
            sim.base_url, api_key="test-key", wire="openai-responses", self_hosted=True
        ),
    }


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


# -- streamed calls: one chat span and one log line each, on every wire that streams ---------


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [x for x in map(json.loads, out.getvalue().splitlines()) if x["event"] == "model_call"]


@pytest.mark.parametrize("model", ["sim:strong", "simR:strong", "simA:strong"])
async def test_a_streamed_call_is_one_chat_span_and_one_log_line(sim, spans, model):
    out = io.StringIO()
    configure_logging(stream=out)
    prices = PriceTable({"simA:strong": Price(3.0, 15.0)}, self_hosted=["simR"])
    client = model_client(model, providers=_providers(sim), prices=prices)
    seen_by_consumer: set[str] = set()
    final = None
    try:
        with start_span("agent_step helper"):
            step = current_traceparent()
            async for delta in client.stream(ASK, timeout=10):
                # the consumer's code between deltas runs under its own span, not the call's
                seen_by_consumer.add(current_traceparent())
                final = delta.response or final
            assert current_traceparent() == step  # nothing left attached after the stream
    finally:
        await client.aclose()
    assert final is not None and final.message.content
    assert seen_by_consumer == {step}
    (step_span,) = [s for s in spans.get_finished_spans() if s.name == "agent_step helper"]
    (chat,) = [s for s in spans.get_finished_spans() if s.name == "chat strong"]
    assert chat.parent.span_id == step_span.context.span_id
    assert chat.kind.name == "CLIENT" and chat.status.status_code is StatusCode.UNSET
    provider = model.partition(":")[0]
    assert dict(chat.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": "strong",
        "gen_ai.request.max_tokens": 64,
        "stalwart.streamed": True,
        "gen_ai.response.model": "strong",
        "gen_ai.usage.input_tokens": final.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": final.usage.completion_tokens,
        "gen_ai.response.finish_reasons": (final.finish_reason,),
        "stalwart.cost_usd": final.cost_usd,
    }
    assert final.usage.prompt_tokens > 0 and final.usage.completion_tokens > 0
    (line,) = _lines(out)
    assert (line["level"], line["outcome"], line["streamed"], line["model"]) == (
        "info",
        "ok",
        True,
        model,
    )
    assert (line["tokens_in"], line["tokens_out"]) == (
        final.usage.prompt_tokens,
        final.usage.completion_tokens,
    )
    assert line["cost_usd"] == round(final.cost_usd, 8) and line["latency_ms"] > 0


async def test_a_streamed_call_records_its_retries_its_failure_and_its_abandonment(sim, spans):
    out = io.StringIO()
    configure_logging(stream=out)
    bus = EventBus(log=False)
    trace_events(bus)
    chain = model_chain(
        "main", ["sim:strong"], providers=_providers(sim), events=bus, retry=FAST_RETRY
    )
    try:
        # the first attempt to open the stream gets a 500, the retry streams the answer
        sim.world.set_fault("strong", status=500, error_rate=0.5)
        async for _ in chain.stream(ASK, timeout=10):
            pass
        # the stream breaks off after its first event
        sim.world.set_fault("strong", body="stream_cut")
        with pytest.raises(BadModelResponse):
            async for _ in chain.stream(ASK, timeout=10):
                pass
        sim.world.clear_faults()
        # the consumer stops reading after the first delta
        stream = chain.stream(ASK, timeout=10)
        await anext(stream)
        await stream.aclose()
    finally:
        await chain.aclose()
    retried, cut, abandoned = [s for s in spans.get_finished_spans() if s.name == "chat strong"]
    assert [e.name for e in retried.events] == ["dependency_retry"]
    assert retried.attributes["gen_ai.usage.output_tokens"] > 0
    assert cut.status.status_code is StatusCode.ERROR
    assert cut.attributes["error.type"] == "BadModelResponse"
    assert abandoned.attributes["error.type"] == "GeneratorExit"
    lines = _lines(out)
    assert [(x["outcome"], x.get("error_class"), x["streamed"]) for x in lines] == [
        ("ok", None, True),
        ("error", classify(BadModelResponse("x")).label, True),
        ("error", "cancelled", True),
    ]


# -- a client of your own (here the official SDK's), inside GuardedModel ----------------------


async def test_your_own_clients_calls_are_chat_spans_and_log_lines_and_its_stream_is_retried(
    sim, spans
):
    from stalwart.llm.sdk.openai import OpenAISDKClient

    out = io.StringIO()
    configure_logging(stream=out)
    bus = EventBus(log=False)
    trace_events(bus)

    def mine(model: str) -> OpenAISDKClient:
        return OpenAISDKClient(model, provider="mine", base_url=sim.base_url, api_key="k")

    chain = model_chain(
        "main",
        ["mine:strong"],
        providers={"mine": Provider(client=mine, self_hosted=True)},
        prices=PriceTable(self_hosted=["mine"]),
        events=bus,
        retry=FAST_RETRY,
    )
    try:
        with start_span("agent_step helper"):
            whole = await chain.complete(ASK, timeout=10)
            # the stream's first attempt fails (every other request does): retried, since
            # nothing reached the caller yet
            sim.world.set_fault("strong", status=500, error_rate=0.5)
            texts, final = [], None
            async for delta in chain.stream(ASK, timeout=10):
                texts.append(delta.text)
                final = delta.response or final
    finally:
        await chain.aclose()
    assert final is not None and "".join(texts) == final.message.content == whole.message.content
    chats = [s for s in spans.get_finished_spans() if s.name == "chat strong"]
    assert len(chats) == 2
    plain, streamed = chats
    assert plain.attributes["gen_ai.provider.name"] == "mine"
    assert plain.attributes["gen_ai.usage.input_tokens"] == whole.usage.prompt_tokens > 0
    assert "stalwart.streamed" not in plain.attributes
    assert streamed.attributes["stalwart.streamed"] is True
    assert streamed.attributes["gen_ai.usage.output_tokens"] == final.usage.completion_tokens
    assert [e.name for e in streamed.events] == ["dependency_retry"]
    lines = _lines(out)
    assert [(x["model"], x["outcome"], x.get("streamed", False)) for x in lines] == [
        ("mine:strong", "ok", False),
        ("mine:strong", "ok", True),
    ]
