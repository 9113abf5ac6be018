"""GD-1 and the model side of EH-1..EH-3: a primary in trouble, the fallback serves."""

from __future__ import annotations

import time

import pytest

from stalwart.errors import AllModelsFailed, ModelHTTPError
from stalwart.llm import FallbackChain, Message, ModelRequest, model_client
from stalwart.observe import EventBus
from stalwart.resilience import BreakerConfig, BreakerState, CircuitBreaker, RetryPolicy
from stalwart.testing import FakeClock

from .conftest import FAST_BREAKER, FAST_RETRY, providers

ASK = ModelRequest(messages=(Message("user", "What is the capital of Spain?"),), max_tokens=64)


def make_chain(sim, *, retry, breaker_config):
    bus = EventBus(log=False)
    clock = FakeClock()
    breaker = CircuitBreaker("sim:strong", breaker_config, clock=clock)
    primary = model_client("sim:strong", providers=providers(sim), retry=retry, breaker=breaker)
    fallback = model_client("sim:weak", providers=providers(sim), retry=retry, breaker=None)
    chain = FallbackChain("answers", [primary, fallback], events=bus, clock=clock)
    chain.test_bus, chain.test_clock, chain.test_breaker = bus, clock, breaker
    return chain


@pytest.fixture
async def chain(sim):
    # retries on, a breaker that needs many calls to judge: each fault shows its retry pattern
    chain = make_chain(
        sim, retry=FAST_RETRY, breaker_config=BreakerConfig(window_size=100, minimum_calls=50)
    )
    yield chain
    await chain.aclose()


@pytest.fixture
async def tripping_chain(sim):
    # one attempt per call and a breaker that trips after two failures
    chain = make_chain(sim, retry=None, breaker_config=FAST_BREAKER)
    yield chain
    await chain.aclose()


def strong_requests(sim) -> int:
    return sim.world.stats["strong:requests"]


async def test_primary_serves_when_healthy(chain):
    response = await chain.complete(ASK, timeout=5)
    assert response.model == "sim:strong" and response.fallback_from == ()
    assert "Madrid" in response.message.content


@pytest.mark.parametrize(
    ("fault", "primary_attempts"),
    [
        ({"outage": True}, FAST_RETRY.max_attempts),
        ({"status": 500}, FAST_RETRY.max_attempts),
        ({"status": 429, "retry_after": 0.01}, FAST_RETRY.max_attempts),
        ({"status": 401}, 1),  # permanent: tried once, never retried
    ],
    ids=["outage", "500-storm", "429-retry-after", "401"],
)
async def test_faulty_primary_falls_back_within_the_deadline(chain, sim, fault, primary_attempts):
    sim.world.set_fault("strong", **fault)
    started = time.monotonic()
    response = await chain.complete(ASK, timeout=5)
    assert time.monotonic() - started < 5
    assert response.model == "sim:weak"
    assert response.fallback_from == ("sim:strong",)
    assert "Madrid" in response.message.content
    assert strong_requests(sim) == primary_attempts
    [switch] = chain.test_bus.recent("model_fallback")
    assert switch["from_model"] == "sim:strong" and switch["to_model"] == "sim:weak"
    assert chain.test_bus.recent("degradation_started")


async def test_hanging_primary_leaves_the_fallback_time_to_answer(chain, sim):
    sim.world.set_fault("strong", hang=True, hang_s=30)
    started = time.monotonic()
    response = await chain.complete(ASK, timeout=2.0)
    took = time.monotonic() - started
    assert response.model == "sim:weak"
    assert 1.0 <= took < 2.0  # the primary had half the deadline, the fallback the rest


async def test_breaker_opens_and_traffic_returns_to_the_primary_after_half_open(
    tripping_chain, sim
):
    chain = tripping_chain
    sim.world.set_fault("strong", outage=True)
    for _ in range(2):  # minimum_calls=2, both failed: the breaker opens
        assert (await chain.complete(ASK, timeout=5)).model == "sim:weak"
    assert chain.test_breaker.state is BreakerState.OPEN
    before = strong_requests(sim)
    for _ in range(5):  # while open the primary is skipped without a network call
        assert (await chain.complete(ASK, timeout=5)).model == "sim:weak"
    assert strong_requests(sim) == before

    sim.world.clear_faults()
    chain.test_clock.advance(FAST_BREAKER.wait_duration_in_open)  # open -> half-open is due
    response = await chain.complete(ASK, timeout=5)
    assert response.model == "sim:strong"  # the half-open trial succeeded
    assert chain.test_breaker.state is BreakerState.CLOSED
    [ended] = chain.test_bus.recent("degradation_ended")
    assert ended["duration_s"] == pytest.approx(FAST_BREAKER.wait_duration_in_open)
    assert chain.degraded_since is None


async def test_bad_request_is_not_passed_down_the_chain(chain, sim):
    sim.world.set_fault("strong", status=400)
    with pytest.raises(ModelHTTPError, match="400"):
        await chain.complete(ASK, timeout=5)
    assert sim.world.stats["weak:requests"] == 0


async def test_every_model_failing_is_one_clear_error(sim):
    sim.world.set_fault("strong", outage=True)
    sim.world.set_fault("weak", outage=True)
    models = [
        model_client(
            f"sim:{m}",
            providers=providers(sim),
            retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.02),
            breaker=None,
        )
        for m in ("strong", "weak")
    ]
    chain = FallbackChain("answers", models, events=EventBus(log=False))
    try:
        with pytest.raises(AllModelsFailed, match="every model of chain 'answers' failed") as info:
            await chain.complete(ASK, timeout=5)
        assert set(info.value.errors) == {"sim:strong", "sim:weak"}
    finally:
        await chain.aclose()
