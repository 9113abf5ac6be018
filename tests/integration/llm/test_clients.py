"""One contract suite, run against both wire formats (OpenAI and Anthropic) of the sim."""

from __future__ import annotations

import time

import pytest

from stalwart.errors import (
    BadModelResponse,
    CircuitOpen,
    ConfigError,
    ContextLengthExceeded,
    DeadlineExceeded,
    ModelAuthError,
    ModelHTTPError,
)
from stalwart.llm import Message, ModelRequest, ToolSpec, model_client
from stalwart.llm.sim import BODY_FAULTS
from stalwart.resilience import CircuitBreaker, RetryPolicy, gave_up

from .conftest import FAST_BREAKER, FAST_RETRY, PRICES, providers

WIRES = ["sim", "simA"]
LOOKUP = ToolSpec(
    "lookup_order",
    "Find an order",
    {"type": "object", "properties": {"order_id": {"type": "integer"}}},
)


def ask(text: str, *, tools=(), max_tokens: int = 256) -> ModelRequest:
    return ModelRequest(
        messages=(Message("system", "Be brief."), Message("user", text)),
        tools=tuple(tools),
        max_tokens=max_tokens,
    )


@pytest.fixture
async def client_for(sim):
    made = []

    def make(wire: str, model: str = "strong", **options):
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("breaker", None)
        options.setdefault("prices", PRICES)
        client = model_client(f"{wire}:{model}", providers=providers(sim), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def requests_to(sim, model: str) -> int:
    return sim.world.stats[f"{model}:requests"]


@pytest.mark.parametrize("wire", WIRES)
async def test_answer_with_usage_and_cost(client_for, wire):
    client = client_for(wire)
    response = await client.complete(ask("What is the capital of Japan?"), timeout=5)
    assert "Tokyo" in response.message.content
    assert response.model == f"{wire}:strong"
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    price = PRICES.price(f"{wire}:strong")
    assert response.cost_usd == pytest.approx(price.cost(response.usage))
    assert response.fallback_from == ()


@pytest.mark.parametrize("wire", WIRES)
async def test_tool_call_round_trip(client_for, wire):
    client = client_for(wire)
    first = await client.complete(ask("Status of order #77?", tools=[LOOKUP]), timeout=5)
    [call] = first.message.tool_calls
    assert (call.name, call.arguments) == ("lookup_order", {"order_id": 77})
    follow = ModelRequest(
        messages=(
            Message("user", "Status of order #77?"),
            first.message,
            Message("tool", '{"status": "delivered"}', tool_call_id=call.id),
        ),
        tools=(LOOKUP,),
    )
    second = await client.complete(follow, timeout=5)
    assert "delivered" in second.message.content and not second.message.tool_calls


@pytest.mark.parametrize("wire", WIRES)
async def test_auth_error_is_not_retried(client_for, sim, wire):
    sim.world.set_keys("strong", ["another-key"])
    client = client_for(wire)
    with pytest.raises(ModelAuthError, match="401"):
        await client.complete(ask("hi"), timeout=5)
    assert requests_to(sim, "strong") == 1


@pytest.mark.parametrize("wire", WIRES)
async def test_rotated_key_is_used_from_the_next_request(sim, wire):
    keys = ["old"]
    provider = providers(sim)[wire]
    rotating = {
        wire: type(provider)(provider.base_url, api_key=lambda: keys[0], wire=provider.wire)
    }
    client = model_client(
        f"{wire}:strong", providers=rotating, prices=PRICES, retry=None, breaker=None
    )
    try:
        sim.world.set_keys("strong", ["old"])
        await client.complete(ask("hi"), timeout=5)
        sim.world.set_keys("strong", ["new"])
        keys[0] = "new"
        await client.complete(ask("hi"), timeout=5)
    finally:
        await client.aclose()


@pytest.mark.parametrize("wire", WIRES)
async def test_429_honours_retry_after(client_for, sim, wire):
    sim.world.set_fault("strong", status=429, error_rate=0.5, retry_after=0.2)
    client = client_for(wire, retry=RetryPolicy(max_attempts=3, base=0.01, cap=1.0))
    started = time.monotonic()
    response = await client.complete(ask("What is 7 * 8?"), timeout=5)
    assert "56" in response.message.content
    assert time.monotonic() - started >= 0.2  # waited what the server asked, not the 10 ms base
    assert requests_to(sim, "strong") == 2


@pytest.mark.parametrize("wire", WIRES)
async def test_500_storm_is_retried_then_exhausted(client_for, sim, wire):
    sim.world.set_fault("strong", status=500)
    client = client_for(wire)
    with pytest.raises(ModelHTTPError) as info:  # the last attempt's own error (issue 18)
        await client.complete(ask("hi"), timeout=5)
    assert info.value.status_code == 500
    record = gave_up(info.value)
    assert record is not None and record.attempts == FAST_RETRY.max_attempts
    assert requests_to(sim, "strong") == FAST_RETRY.max_attempts


@pytest.mark.parametrize("wire", WIRES)
async def test_context_length_is_a_permanent_classified_error(client_for, sim, wire):
    client = client_for(wire, "weak")  # 16k tokens
    with pytest.raises(ContextLengthExceeded, match="prompt too long for this model"):
        await client.complete(ask("word " * 80_000), timeout=5)
    assert requests_to(sim, "weak") == 1


@pytest.mark.parametrize("wire", WIRES)
async def test_unknown_model_is_permanent(client_for, sim, wire):
    client = client_for(
        wire,
        "no-such-model",
        prices=type(PRICES)({f"{wire}:no-such-model": PRICES.price("simA:strong")}),
    )
    with pytest.raises(ModelHTTPError, match="404") as info:
        await client.complete(ask("hi"), timeout=5)
    assert info.value.retryable == "permanent"


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("body", BODY_FAULTS)
async def test_bad_response_bodies_are_clear_classified_errors(client_for, sim, wire, body):
    sim.world.set_fault("strong", body=body)
    client = client_for(wire, retry=None, max_response_bytes=1024 * 1024)
    started = time.monotonic()
    with pytest.raises(BadModelResponse) as info:
        await client.complete(ask("hi"), timeout=5)
    assert info.value.retryable == "retryable"
    assert info.value.model == f"{wire}:strong"
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("wire", WIRES)
async def test_hang_ends_at_the_deadline(client_for, sim, wire):
    sim.world.set_fault("strong", hang=True, hang_s=30)
    client = client_for(wire, retry=None)
    started = time.monotonic()
    with pytest.raises((DeadlineExceeded, TimeoutError)):
        await client.complete(ask("hi"), timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 1.5


@pytest.mark.parametrize("wire", WIRES)
async def test_connection_refused_trips_the_breaker(client_for, sim, wire):
    # a breaker of its own: the process-wide registry may hold this name already
    client = client_for(wire, breaker=CircuitBreaker(f"{wire}:strong", FAST_BREAKER), retry=None)
    sim.stop()
    for _ in range(2):
        with pytest.raises(Exception) as info:
            await client.complete(ask("hi"), timeout=2)
        assert not isinstance(info.value, CircuitOpen)
    started = time.monotonic()
    with pytest.raises(CircuitOpen):
        await client.complete(ask("hi"), timeout=2)
    assert time.monotonic() - started < 0.05  # rejected without a network call


def test_unknown_provider_and_bad_specs_are_config_errors(sim):
    with pytest.raises(ConfigError, match="unknown model provider 'nope'"):
        model_client("nope:x", providers=providers(sim))
    with pytest.raises(ConfigError, match="must look like 'provider:model'"):
        model_client("strong", providers=providers(sim))
    with pytest.raises(ConfigError, match="no price for model"):
        model_client("sim:unpriced", providers=providers(sim))


async def test_anthropic_endpoint_answers_in_the_documented_shapes(sim):
    import httpx

    async with httpx.AsyncClient(timeout=5) as http:
        url = f"{sim.url}/v1/messages"
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        ok = await http.post(
            url,
            headers=headers,
            json={
                "model": "strong",
                "max_tokens": 64,
                "system": "be brief",
                "messages": [{"role": "user", "content": "What is the capital of Chile?"}],
            },
        )
        body = ok.json()
        assert body["type"] == "message" and body["role"] == "assistant"
        assert body["content"][0]["type"] == "text" and "Santiago" in body["content"][0]["text"]
        assert body["stop_reason"] == "end_turn" and body["usage"]["input_tokens"] > 0
        missing = await http.post(url, headers=headers, json={"model": "strong", "messages": []})
        assert missing.status_code == 400
        assert missing.json() == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: field required"},
        }
        sim.world.set_fault("strong", status=529)
        overloaded = await http.post(
            url,
            headers=headers,
            json={
                "model": "strong",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
        assert overloaded.status_code == 529
        assert overloaded.json()["error"]["type"] == "overloaded_error"


async def test_anthropic_overloaded_529_is_retried(client_for, sim):
    sim.world.set_fault("strong", status=529, error_rate=0.5)
    response = await client_for("simA").complete(ask("What is 9 * 9?"), timeout=5)
    assert "81" in response.message.content
    assert requests_to(sim, "strong") == 2
