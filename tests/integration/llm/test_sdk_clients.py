"""The official SDKs and LiteLLM as pluggable clients (stalwart.llm.sdk) against the sim:
each API shape through the SDK, inside stalwart's policy (retry, fallback, pricing,
streaming), and the SDK's errors said in stalwart's words (a parameter-incompatibility
400 moves the chain on, a malformed request stays permanent, a dead endpoint is
retryable/systemic)."""

from __future__ import annotations

import os
from typing import Any

import anthropic
import openai
import pydantic
import pytest

from stalwart.errors import (
    AllModelsFailed,
    ModelCannotServe,
    ModelHTTPError,
    RateLimited,
    RetriesExhausted,
)
from stalwart.llm import (
    Capabilities,
    GuardedModel,
    Message,
    ModelRequest,
    PriceTable,
    Provider,
    StreamDelta,
    StreamingModelClient,
    ToolSpec,
    model_chain,
    structured,
)
from stalwart.llm.sdk.anthropic import AnthropicSDKClient
from stalwart.llm.sdk.openai import OpenAISDKClient
from stalwart.llm.sim import Rule, Scenario, SimServer
from stalwart.observe import REGISTRY
from stalwart.resilience import classify

from .conftest import FAST_RETRY

LOOKUP = ToolSpec(
    "lookup_order",
    "Find an order by id",
    {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]},
)
TWO = (Message(role="user", content="Where are order #11 and order #12?"),)
PARIS = ModelRequest((Message(role="user", content="What is the capital of France?"),))
PARALLEL = Scenario(
    (
        Rule(
            match=r"order #?(?P<order_id>\d+)",
            call="lookup_order",
            arguments={"order_id": "{order_id}"},
            parallel=True,
        ),
    )
)
FREE = PriceTable(self_hosted=["oai", "oair", "ant"])


class Verdict(pydantic.BaseModel):
    answer: str
    confidence: int


def _providers(sim: SimServer, capabilities: Capabilities | None = None) -> dict[str, Provider]:
    """Three providers on the sim, each one an official SDK client."""

    def oai(model: str) -> OpenAISDKClient:
        return OpenAISDKClient(
            model, provider="oai", base_url=sim.base_url, api_key="k", capabilities=capabilities
        )

    def oair(model: str) -> OpenAISDKClient:
        mine = openai.AsyncOpenAI(base_url=sim.base_url, api_key="k")  # the user's own client
        return OpenAISDKClient(model, client=mine, provider="oair", api="responses")

    def ant(model: str) -> AnthropicSDKClient:
        return AnthropicSDKClient(model, provider="ant", base_url=sim.url, api_key="k")

    return {
        "oai": Provider(client=oai, retry=FAST_RETRY),
        "oair": Provider(client=oair, retry=FAST_RETRY),
        "ant": Provider(client=ant, retry=FAST_RETRY),
    }


async def _collect(stream: Any) -> tuple[list[str], list[Any], Any]:
    text, calls, final = [], [], None
    async for delta in stream:
        assert isinstance(delta, StreamDelta)
        if delta.response is not None:
            final = delta.response
        elif delta.tool_call is not None:
            calls.append(delta.tool_call)
        else:
            text.append(delta.text)
    assert final is not None
    return text, calls, final


@pytest.mark.parametrize("spec", ["oai:strong", "oair:strong", "ant:strong"])
async def test_each_sdk_serves_tools_in_parallel_streams_and_structured_output(spec):
    with SimServer(scenario=PARALLEL) as sim:
        chain = model_chain("main", [spec], providers=_providers(sim), prices=FREE)
        (model,) = chain.models
        assert isinstance(model, GuardedModel) and isinstance(model, StreamingModelClient)
        before = (
            REGISTRY.get_sample_value(
                "stalwart_model_requests_total",
                {"model": spec, "provider": spec.split(":")[0], "operation": "stream"},
            )
            or 0.0
        )
        plain = await chain.complete(ModelRequest(TWO, tools=(LOOKUP,)))
        want = [{"order_id": 11}, {"order_id": 12}]
        assert [c.arguments for c in plain.message.tool_calls] == want
        assert plain.finish_reason == "tool_calls" and plain.usage.prompt_tokens > 0
        _, calls, streamed = await _collect(chain.stream(ModelRequest(TWO, tools=(LOOKUP,))))
        assert [c.arguments for c in calls] == want
        assert streamed.message.tool_calls == tuple(calls)
        text, _, final = await _collect(chain.stream(PARIS))
        assert (
            len(text) > 1
            and "".join(text) == final.message.content
            and "Paris" in text[0] + "".join(text)
        )
        assert final.model == spec and final.usage.completion_tokens > 0
        after = REGISTRY.get_sample_value(
            "stalwart_model_requests_total",
            {"model": spec, "provider": spec.split(":")[0], "operation": "stream"},
        )
        assert after == before + 2  # streamed through the SDK, not answered whole
        value, _ = await structured(chain, PARIS, Verdict)
        assert isinstance(value, Verdict) and "Paris" in value.answer
        await chain.aclose()


async def test_reasoning_parameters_reach_the_model_through_the_sdks(sim):
    for spec in ("oai:reasoner", "oair:reasoner"):
        chain = model_chain("main", [spec], providers=_providers(sim), prices=FREE)
        answer = await chain.complete(ModelRequest(PARIS.messages, reasoning_effort="high"))
        assert answer.usage.reasoning_tokens == 16, spec  # refused with max_tokens/temperature
        assert "Paris" in answer.message.content
        await chain.aclose()


async def test_a_parameter_incompatibility_moves_on_and_a_malformed_request_does_not(sim):
    wrong = Capabilities()  # max_tokens + temperature: what a reasoning model refuses
    providers = _providers(sim, capabilities=wrong)
    chain = model_chain("main", ["oai:reasoner", "ant:strong"], providers=providers, prices=FREE)
    before = sim.world.stats["reasoner:requests"]
    answer = await chain.complete(PARIS)
    assert answer.model == "ant:strong" and answer.fallback_from == ("oai:reasoner",)
    assert sim.world.stats["reasoner:requests"] == before + 1  # refused once, not retried
    (error,) = [m for m in chain.models if m.name == "oai:reasoner"]
    with pytest.raises(ModelCannotServe) as caught:
        await error.complete(PARIS)
    assert caught.value.param == "max_tokens"
    await chain.aclose()

    sim.world.set_fault("strong", status=400)  # the request's own fault: no model will take it
    chain = model_chain("main", ["oai:strong", "ant:weak"], providers=_providers(sim), prices=FREE)
    with pytest.raises(ModelHTTPError) as bad:
        await chain.complete(PARIS)
    assert bad.value.status_code == 400 and sim.world.stats["weak:requests"] == 0
    await chain.aclose()


async def test_sdk_errors_are_classified_retried_and_fall_back(sim):
    sim.world.set_fault("strong", status=429, error_rate=1.0)
    chain = model_chain("main", ["oai:strong"], providers=_providers(sim), prices=FREE)
    before = sim.world.stats["strong:requests"]
    with pytest.raises(AllModelsFailed) as caught:
        await chain.complete(PARIS)
    assert sim.world.stats["strong:requests"] - before == FAST_RETRY.max_attempts  # retried
    error = caught.value.errors["oai:strong"]
    assert isinstance(error, RateLimited | RetriesExhausted), error
    assert classify(error).label.startswith("retryable")
    await chain.aclose()
    sim.world.clear_faults()

    def dead(model: str) -> OpenAISDKClient:
        return OpenAISDKClient(
            model, provider="dead", base_url="http://127.0.0.1:9/v1", api_key="k"
        )

    providers = {**_providers(sim), "dead": Provider(client=dead, retry=FAST_RETRY)}
    prices = PriceTable(self_hosted=["oai", "ant", "dead"])
    chain = model_chain("main", ["dead:strong", "ant:strong"], providers=providers, prices=prices)
    answer = await chain.complete(PARIS)
    assert answer.model == "ant:strong" and answer.fallback_from == ("dead:strong",)
    alone = chain.models[0]
    with pytest.raises(Exception) as refused:
        await alone.complete(PARIS)
    assert classify(refused.value).label == "retryable/systemic"  # as the built-in client says
    await chain.aclose()


def test_an_anthropic_sdk_client_of_your_own_is_kept_with_its_settings(sim):
    mine = anthropic.AsyncAnthropic(base_url=sim.url, api_key="k", max_retries=5)
    client = AnthropicSDKClient("strong", client=mine)
    assert client.sdk.max_retries == 0 and mine.max_retries == 5  # stalwart retries, once
    assert client.name == "anthropic:strong"


async def test_litellm_serves_through_the_sim_when_installed(sim, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch at import
    pytest.importorskip("litellm")
    from stalwart.llm.sdk.litellm import LiteLLMClient

    def lite(model: str) -> LiteLLMClient:
        return LiteLLMClient(model, api_base=sim.base_url, api_key="k")

    providers = {"litellm": Provider(client=lite, retry=FAST_RETRY)}
    prices = PriceTable(self_hosted=["litellm"])
    chain = model_chain("main", ["litellm:openai/strong"], providers=providers, prices=prices)
    asked = ModelRequest(
        (Message(role="user", content="Where is my order #4521?"),), tools=(LOOKUP,)
    )
    answer = await chain.complete(asked)
    assert [c.arguments for c in answer.message.tool_calls] == [{"order_id": 4521}]
    text, _, final = await _collect(chain.stream(PARIS))
    assert "".join(text) == final.message.content and "Paris" in final.message.content
    sim.world.set_fault("strong", status=429, error_rate=1.0)
    before = sim.world.stats["strong:requests"]
    with pytest.raises(AllModelsFailed) as caught:
        await chain.complete(PARIS)
    assert sim.world.stats["strong:requests"] - before == FAST_RETRY.max_attempts
    error = caught.value.errors["litellm:openai/strong"]
    assert isinstance(error, RateLimited | RetriesExhausted), error  # LiteLLM's error, said ours
    await chain.aclose()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
