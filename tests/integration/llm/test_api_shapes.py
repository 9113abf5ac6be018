"""Each API shape against the sim, through stalwart's client and the official clients:
chat, responses, messages, streaming, structured output, tool calls, reasoning parameters,
prompt caching, and a parameter-incompatibility 400 moving the chain to the next model."""

from __future__ import annotations

import json

import anthropic
import openai
import pydantic
import pytest

from stalwart.errors import BadModelResponse, ModelCannotServe, ModelHTTPError, OutputInvalid
from stalwart.llm import (
    Capabilities,
    Message,
    ModelRequest,
    ModelResponse,
    OpenAIResponsesClient,
    Price,
    PriceTable,
    Provider,
    StreamDelta,
    ToolSpec,
    model_chain,
    model_client,
    structured,
)
from stalwart.llm.sim import Rule, Scenario, SimServer

from .conftest import FAST_RETRY, PRICES, providers

LOOKUP = ToolSpec(
    "lookup_order",
    "Find an order by id",
    {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]},
)
ORDER = (
    Message(role="system", content="You are a helpdesk agent."),
    Message(role="user", content="Where is my order #4521?"),
)


PRICES_ALL = PriceTable({"simA:strong": Price(3.0, 15.0), "simA:weak": Price(0.8, 4.0)})


class Verdict(pydantic.BaseModel):
    answer: str
    confidence: int


def _all(sim: SimServer) -> dict[str, Provider]:
    return {
        **providers(sim),
        # declared self-hosted: its models need no price (and cost nothing)
        "simR": Provider(
            sim.base_url, api_key="test-key", wire="openai-responses", self_hosted=True
        ),
    }


async def _collect(stream) -> tuple[str, list, ModelResponse]:  # type: ignore[no-untyped-def]
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
    return "".join(text), calls, final


# -- reasoning-model parameters --------------------------------------------------------------


async def test_reasoning_model_gets_max_completion_tokens_and_no_temperature(sim):
    client = model_client("sim:reasoner", providers=providers(sim), retry=FAST_RETRY)
    assert client.capabilities.max_tokens_param == "max_completion_tokens"
    body = client._encode(ModelRequest(ORDER, reasoning_effort="low"))
    assert "max_tokens" not in body and "temperature" not in body
    assert body["max_completion_tokens"] == 1024 and body["reasoning_effort"] == "low"
    response = await client.complete(
        ModelRequest((Message(role="user", content="What is the capital of Japan?"),))
    )
    assert response.usage.reasoning_tokens == 16
    assert "Tokyo" in response.message.content
    await client.aclose()


async def test_parameter_incompatibility_is_cannot_serve_and_the_chain_moves_on(sim):
    wrong = Capabilities()  # max_tokens + temperature: what a reasoning model refuses
    alone = model_client(
        "sim:reasoner", providers=providers(sim), retry=FAST_RETRY, capabilities=wrong
    )
    with pytest.raises(ModelCannotServe) as caught:
        await alone.complete(ModelRequest(ORDER))
    assert caught.value.param == "max_tokens"
    assert "max_completion_tokens" in str(caught.value)
    before = sim.world.stats["reasoner:requests"]
    await alone.aclose()

    chain = model_chain(
        "main",
        ["sim:reasoner", "sim:strong"],
        providers={
            **providers(sim),
            "sim": Provider(sim.base_url, api_key="k", capabilities=wrong, retry=FAST_RETRY),
        },
    )
    response = await chain.complete(ModelRequest(ORDER, tools=(LOOKUP,)))
    assert response.model == "sim:strong"
    assert response.fallback_from == ("sim:reasoner",)
    # refused once, not retried: the same request would be refused again
    assert sim.world.stats["reasoner:requests"] == before + 1
    await chain.aclose()


async def test_a_malformed_request_400_is_still_raised_at_once(sim):
    sim.world.set_fault("strong", status=400)
    chain = model_chain("main", ["sim:strong", "sim:weak"], providers=providers(sim))
    with pytest.raises(ModelHTTPError) as caught:
        await chain.complete(ModelRequest(ORDER))
    assert caught.value.status_code == 400
    assert sim.world.stats["weak:requests"] == 0
    await chain.aclose()


async def test_a_fault_armed_with_skip_lets_that_many_requests_pass_first(sim):
    sim.world.set_fault("strong", status=400, skip=2)  # armed before the first request
    chain = model_chain("main", ["sim:strong"], providers=providers(sim))
    for _ in range(2):
        assert (await chain.complete(ModelRequest(ORDER))).message
    with pytest.raises(ModelHTTPError) as caught:  # the third meets the fault
        await chain.complete(ModelRequest(ORDER))
    assert caught.value.status_code == 400
    assert sim.world.stats["strong:requests"] == 3
    await chain.aclose()


def test_official_client_sees_the_reasoning_refusal_as_openai_words_it(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="reasoner", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == "max_tokens"
    ok = client.chat.completions.create(
        model="reasoner",
        messages=[{"role": "user", "content": "What is 2+3?"}],
        max_completion_tokens=10,
        reasoning_effort="low",
    )
    assert ok.usage.completion_tokens_details.reasoning_tokens == 16


# -- chat completions: tools, streaming, structured output, caching ------------------------


async def test_chat_stream_assembles_the_same_answer_as_complete(sim):
    client = model_client("sim:strong", providers=providers(sim), prices=None)
    plain = await client.complete(ModelRequest(ORDER, tools=(LOOKUP,)))
    text, calls, final = await _collect(client.stream(ModelRequest(ORDER, tools=(LOOKUP,))))
    assert final.message.tool_calls[0].name == plain.message.tool_calls[0].name == "lookup_order"
    assert final.message.tool_calls[0].arguments == {"order_id": 4521}
    assert [c.name for c in calls] == ["lookup_order"]
    assert final.finish_reason == "tool_calls"
    answer = ModelRequest((Message(role="user", content="What is the capital of France?"),))
    text, calls, final = await _collect(client.stream(answer))
    assert text == final.message.content and "Paris" in text
    assert len(text) > 12  # it came in several pieces
    assert final.usage.prompt_tokens > 0 and final.cost_usd > 0
    await client.aclose()


def test_official_client_streams_chat_from_the_sim(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=10)
    stream = client.chat.completions.create(
        model="strong",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_structured_output_validates_and_repairs(sim):
    strong = model_client("sim:strong", providers=providers(sim))
    value, _ = await structured(strong, ModelRequest(ORDER), Verdict)
    assert isinstance(value, Verdict) and value.answer
    weak = model_client("sim:weak", providers=providers(sim))
    value, _ = await structured(weak, ModelRequest(ORDER), Verdict, attempts=2)  # one repair
    assert isinstance(value, Verdict)
    with pytest.raises(OutputInvalid) as caught:
        await structured(weak, ModelRequest(ORDER), Verdict, attempts=1)
    assert "answer: Field required" in str(caught.value) and "Verdict" in str(caught.value)
    await strong.aclose()
    await weak.aclose()


def test_official_client_parses_structured_output_from_the_sim(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=10)
    completion = client.beta.chat.completions.parse(
        model="strong",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        response_format=Verdict,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Verdict) and "Paris" in parsed.answer


async def test_openai_prompt_cache_reports_cached_tokens_and_costs_less(sim):
    client = model_client("sim:strong", providers=providers(sim))
    system = Message(role="system", content="You are a helpdesk agent. " * 200)
    first = await client.complete(ModelRequest((system, Message(role="user", content="hi"))))
    second = await client.complete(ModelRequest((system, Message(role="user", content="hey"))))
    assert first.usage.cached_tokens == 0
    assert second.usage.cached_tokens > 1000
    assert second.cost_usd < first.cost_usd
    await client.aclose()


# -- the Responses API -----------------------------------------------------------------------


async def test_responses_api_tool_round_trip_stream_and_schema(sim):
    free = PriceTable(self_hosted=["simR"])
    client = model_client("simR:strong", providers=_all(sim), prices=free)
    assert isinstance(client, OpenAIResponsesClient)
    first = await client.complete(ModelRequest(ORDER, tools=(LOOKUP,)))
    call = first.message.tool_calls[0]
    assert (call.name, call.arguments) == ("lookup_order", {"order_id": 4521})
    turns = (
        *ORDER,
        first.message,
        Message(role="tool", tool_call_id=call.id, content='{"status": "shipped"}'),
    )
    second = await client.complete(ModelRequest(turns, tools=(LOOKUP,)))
    assert "shipped" in second.message.content
    text, _, final = await _collect(client.stream(ModelRequest(turns, tools=(LOOKUP,))))
    assert text == final.message.content == second.message.content
    value, _ = await structured(client, ModelRequest(ORDER), Verdict)
    assert isinstance(value, Verdict)
    assert first.cost_usd == 0.0
    reasoner = model_client("simR:reasoner", providers=_all(sim), prices=free)
    thought = await reasoner.complete(ModelRequest(ORDER, reasoning_effort="high"))
    assert thought.usage.reasoning_tokens == 16
    await client.aclose()
    await reasoner.aclose()


def test_official_client_speaks_the_responses_api_with_the_sim(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=10)
    tools = [
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": LOOKUP.parameters,
        }
    ]
    first = client.responses.create(
        model="strong", instructions="You are a helpdesk agent.", input="Where is order #4521?",
        tools=tools,
    )  # fmt: skip
    call = next(item for item in first.output if item.type == "function_call")
    assert json.loads(call.arguments) == {"order_id": 4521}
    follow = [
        {"role": "user", "content": "Where is order #4521?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "shipped"},
    ]  # fmt: skip
    events = list(client.responses.create(model="strong", input=follow, tools=tools, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert "shipped" in deltas and deltas == events[-1].response.output_text
    parsed = client.responses.parse(model="strong", input="What is 2+3?", text_format=Verdict)
    assert isinstance(parsed.output_parsed, Verdict)


# -- Anthropic Messages ----------------------------------------------------------------------


async def test_anthropic_stream_cache_and_structured_output(sim):
    client = model_client("simA:strong", providers=providers(sim), prices=PRICES)
    body = client._encode(ModelRequest(ORDER, tools=(LOOKUP,)))
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    first = await client.complete(ModelRequest(ORDER, tools=(LOOKUP,)))
    assert first.usage.cache_write_tokens > 0 and first.usage.cached_tokens == 0
    _, calls, final = await _collect(client.stream(ModelRequest(ORDER, tools=(LOOKUP,))))
    assert final.usage.cached_tokens == first.usage.cache_write_tokens  # read back
    assert [c.arguments for c in calls] == [{"order_id": 4521}]
    assert final.message.tool_calls == first.message.tool_calls[:0] + tuple(calls)
    value, _ = await structured(client, ModelRequest(ORDER), Verdict)
    assert isinstance(value, Verdict)
    await client.aclose()


def test_official_anthropic_client_streams_from_the_sim(sim):
    client = anthropic.Anthropic(base_url=sim.url, api_key="k", max_retries=0, timeout=10)
    with client.messages.stream(
        model="strong",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Paris" in text and final.content[0].text == text
    assert final.usage.cache_creation_input_tokens > 0


# -- parallel tool calls ---------------------------------------------------------------------

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
TWO = (Message(role="user", content="Where are order #11 and order #12?"),)


@pytest.mark.parametrize("spec", ["sim:strong", "simR:strong", "simA:strong"])
async def test_parallel_tool_calls_on_every_wire_plain_and_streamed(spec):
    with SimServer(scenario=PARALLEL) as server:
        prices = PriceTable({"simA:strong": PRICES.price("simA:strong")}, self_hosted=["simR"])
        client = model_client(spec, providers=_all(server), prices=prices)
        plain = await client.complete(ModelRequest(TWO, tools=(LOOKUP,)))
        _, calls, streamed = await _collect(client.stream(ModelRequest(TWO, tools=(LOOKUP,))))
        for message in (plain.message, streamed.message):
            assert [c.arguments for c in message.tool_calls] == [{"order_id": 11}, {"order_id": 12}]
            assert len({c.id for c in message.tool_calls}) == 2
        assert [c.arguments for c in calls] == [{"order_id": 11}, {"order_id": 12}]
        one = client._encode(ModelRequest(TWO, tools=(LOOKUP,), parallel_tool_calls=False))
        if spec.startswith("simA"):
            assert one["tool_choice"]["disable_parallel_tool_use"] is True
        else:
            assert one["parallel_tool_calls"] is False
        await client.aclose()


def test_official_clients_get_parallel_tool_calls_plain_and_streamed_on_every_wire():
    want = [{"order_id": 11}, {"order_id": 12}]
    ask = TWO[0].content
    with SimServer(scenario=PARALLEL) as server:
        oai = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=10)
        chat_tools = [
            {"type": "function", "function": {"name": LOOKUP.name, "parameters": LOOKUP.parameters}}
        ]
        chat = oai.chat.completions.create(
            model="strong", messages=[{"role": "user", "content": ask}], tools=chat_tools
        )
        calls = chat.choices[0].message.tool_calls
        assert [json.loads(c.function.arguments) for c in calls] == want
        assert len({c.id for c in calls}) == 2
        pieces: dict[int, str] = {}
        for chunk in oai.chat.completions.create(
            model="strong", messages=[{"role": "user", "content": ask}], tools=chat_tools,
            stream=True,
        ):  # fmt: skip
            for piece in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                pieces[piece.index] = pieces.get(piece.index, "") + (piece.function.arguments or "")
        assert [json.loads(pieces[i]) for i in sorted(pieces)] == want

        fn = [{"type": "function", "name": LOOKUP.name, "parameters": LOOKUP.parameters}]
        answer = oai.responses.create(model="strong", input=ask, tools=fn)
        items = [i for i in answer.output if i.type == "function_call"]
        assert [json.loads(i.arguments) for i in items] == want
        done = [
            e.item
            for e in oai.responses.create(model="strong", input=ask, tools=fn, stream=True)
            if e.type == "response.output_item.done" and e.item.type == "function_call"
        ]
        assert [json.loads(i.arguments) for i in done] == want

        ant = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0, timeout=10)
        tools = [{"name": LOOKUP.name, "input_schema": LOOKUP.parameters}]
        message = ant.messages.create(
            model="strong", max_tokens=200, messages=[{"role": "user", "content": ask}],
            tools=tools,
        )  # fmt: skip
        assert [b.input for b in message.content if b.type == "tool_use"] == want
        with ant.messages.stream(
            model="strong", max_tokens=200, messages=[{"role": "user", "content": ask}],
            tools=tools,
        ) as stream:  # fmt: skip
            final = stream.get_final_message()
        assert [b.input for b in final.content if b.type == "tool_use"] == want
        assert final.stop_reason == "tool_use"


def test_official_client_sends_reasoning_effort_on_the_responses_api(sim):
    client = openai.OpenAI(base_url=sim.base_url, api_key="k", max_retries=0, timeout=10)
    thought = client.responses.create(
        model="reasoner", input="What is the capital of Japan?", reasoning={"effort": "high"},
        max_output_tokens=64,
    )  # fmt: skip
    assert thought.usage.output_tokens_details.reasoning_tokens == 16
    assert "Tokyo" in thought.output_text


# -- a stream that breaks ---------------------------------------------------------------------


@pytest.mark.parametrize("primary", ["sim:strong", "simA:strong"])
async def test_a_stream_falls_back_before_its_first_delta_and_never_after(sim, primary):
    backup = "simA:weak" if primary.startswith("simA") else "sim:weak"
    chain = model_chain("main", [primary, backup], providers=providers(sim), prices=PRICES_ALL)
    ask = ModelRequest((Message(role="user", content="What is the capital of France?"),))
    sim.world.set_fault("strong", outage=True)  # refused at the open: the backup serves
    text, _, final = await _collect(chain.stream(ask))
    assert final.model == backup and final.fallback_from == (primary,)
    assert text == final.message.content
    sim.world.clear_faults()
    sim.world.set_fault("strong", body="stream_cut")  # breaks off after its first text
    got: list[str] = []
    with pytest.raises(BadModelResponse, match="stream ended before the answer did"):
        async for delta in chain.stream(ask):
            got.append(delta.text)
    assert got == ["The cap"]  # what the caller had is all it gets: nothing is repeated
    assert sim.world.stats["weak:requests"] == 1  # the backup was not asked again
    await chain.aclose()
