"""A client of your own (here the official openai SDK) runs inside stalwart's policy:
retry, breaker, fallback, metrics and cost; and failures are labelled by their class."""

from __future__ import annotations

import openai
import pytest

from stalwart.errors import ModelError, RateLimited, RetriesExhausted
from stalwart.llm import (
    GuardedModel,
    Message,
    ModelClient,
    ModelRequest,
    ModelResponse,
    Price,
    PriceTable,
    Provider,
    Usage,
    model_chain,
    model_client,
)
from stalwart.observe import REGISTRY
from stalwart.resilience import classify

from .conftest import FAST_RETRY

ASK = ModelRequest((Message(role="user", content="What is the capital of France?"),))


class SDKClient:
    """A ModelClient on the official openai SDK: what a user who already has one writes."""

    def __init__(self, model: str, base_url: str) -> None:
        self.name = f"mine:{model}"
        self.model = model
        self.sdk = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)

    async def complete(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> ModelResponse:
        try:
            out = await self.sdk.chat.completions.create(
                model=self.model,
                messages=[{"role": m.role, "content": m.content} for m in request.messages],
                max_tokens=request.max_tokens,
                timeout=timeout,
            )
        except openai.RateLimitError as exc:  # said in stalwart's words: retryable
            raise RateLimited(str(exc), dependency=self.name) from exc
        except openai.APIStatusError as exc:
            raise ModelError(f"{self.name}: {exc}", model=self.name) from exc
        usage = (
            Usage(out.usage.prompt_tokens, out.usage.completion_tokens) if out.usage else Usage()
        )
        return ModelResponse(
            model=self.name,
            message=Message(role="assistant", content=out.choices[0].message.content or ""),
            finish_reason=out.choices[0].finish_reason,
            usage=usage,
            cost_usd=0.0,
            latency_s=0.0,
        )

    async def aclose(self) -> None:
        await self.sdk.close()


async def test_your_own_client_gets_retry_cost_and_fallback(sim):
    assert isinstance(SDKClient("strong", sim.base_url), ModelClient)
    prices = PriceTable({"mine:strong": Price(1.0, 2.0)})
    guarded = GuardedModel(SDKClient("strong", sim.base_url), retry=FAST_RETRY, prices=prices)
    sim.world.set_fault("strong", status=429, error_rate=1.0)
    before = sim.world.stats["strong:requests"]
    with pytest.raises((RateLimited, RetriesExhausted)) as caught:
        await guarded.complete(ASK)
    assert "429" in str(caught.value)
    assert sim.world.stats["strong:requests"] - before == FAST_RETRY.max_attempts  # retried
    sim.world.clear_faults()
    answer = await guarded.complete(ASK)
    assert "Paris" in answer.message.content
    assert answer.cost_usd == prices.cost("mine:strong", answer.usage) > 0
    await guarded.aclose()

    # in an app: Provider(client=...) builds it per model, inside GuardedModel, in a chain
    chain = model_chain(
        "main",
        ["mine:gone", "mine:strong"],
        providers={"mine": Provider(client=lambda m: SDKClient(m, sim.base_url), self_hosted=True)},
        retry=FAST_RETRY,
        prices=PriceTable(self_hosted=["mine"]),
    )
    served = await chain.complete(ASK)
    assert served.model == "mine:strong" and served.fallback_from == ("mine:gone",)
    await chain.aclose()


async def test_a_failure_is_labelled_with_the_class_the_error_says(sim):
    client = model_client(
        "sim:strong", providers={"sim": Provider("http://127.0.0.1:9/v1")}, retry=FAST_RETRY
    )
    label = {"model": "sim:strong", "provider": "sim", "error_class": "retryable/systemic"}
    before = REGISTRY.get_sample_value("stalwart_model_errors_total", label) or 0.0
    with pytest.raises(Exception) as caught:
        await client.complete(ASK, timeout=5)
    error = caught.value
    if isinstance(error, RetriesExhausted) and error.last_error is not None:
        error = error.last_error
    assert classify(error).label == "retryable/systemic"  # what the error says...
    # ... is what /metrics says
    assert REGISTRY.get_sample_value("stalwart_model_errors_total", label) == before + 1
    await client.aclose()
