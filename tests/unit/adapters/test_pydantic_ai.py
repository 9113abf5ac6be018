"""Pydantic AI messages and tool definitions <-> stalwart's model-call data, and the
declaration's checks."""

from __future__ import annotations

import datetime

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    RetryFeedbackPart,
    RetryInfo,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.tools import ToolDefinition

from stalwart.adapters.pydantic_ai import (
    PydanticAIAgent,
    ToolPolicy,
    idempotency_key,
    to_messages,
    to_response,
    to_tool_specs,
)
from stalwart.errors import ConfigError
from stalwart.guard import Provenance

WHEN = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def test_a_conversation_with_tool_calls_returns_and_retries_maps_turn_for_turn():
    messages = [
        ModelRequest(
            parts=[SystemPromptPart("be brief"), UserPromptPart("refund order #7")],
            instructions="you are support",
        ),
        ModelResponse(
            parts=[
                TextPart("looking"),
                ToolCallPart("lookup_order", {"order_id": 7}, tool_call_id="c1"),
                ToolCallPart("refund", '{"order_id": 7}', tool_call_id="c2"),
            ]
        ),
        ModelRequest(
            parts=[
                ToolReturnPart("lookup_order", {"amount": 5}, tool_call_id="c1"),
                ToolReturnPart(
                    "refund", "amount_cents is required", tool_call_id="c2", outcome="retried"
                ),
            ]
        ),
        ModelResponse(parts=[TextPart("not valid output")]),
        ModelRequest(
            parts=[
                RetryFeedbackPart("answer with final_result", retry=RetryInfo(cause="model_retry"))
            ]
        ),
    ]
    out = to_messages(messages, ModelRequestParameters())
    assert [m["role"] for m in out] == [
        "system", "system", "user", "assistant", "tool", "tool", "assistant", "user",
    ]  # fmt: skip
    assert out[0]["content"] == "be brief"
    assert out[1]["content"] == "you are support"  # instructions after the system prompts
    assert out[3]["content"] == "looking"
    calls = out[3]["tool_calls"]
    assert [c["id"] for c in calls] == ["c1", "c2"]
    assert calls[0]["function"] == {"name": "lookup_order", "arguments": '{"order_id":7}'}
    assert calls[1]["function"]["arguments"] == '{"order_id":7}'  # a JSON string: the same
    assert out[4] == {"role": "tool", "tool_call_id": "c1", "content": '{"amount":5}'}
    assert out[5]["tool_call_id"] == "c2" and "amount_cents is required" in out[5]["content"]
    assert "answer with final_result" in out[7]["content"]  # an output retry: a user turn


def test_a_non_text_user_prompt_is_refused_with_what_to_do():
    from pydantic_ai.messages import ImageUrl

    request = ModelRequest(parts=[UserPromptPart(["see", ImageUrl("https://x/y.png")])])
    with pytest.raises(ConfigError, match="text only"):
        to_messages([request], ModelRequestParameters())


def test_function_and_output_tools_are_offered_with_their_schemas():
    schema = {"type": "object", "properties": {"order_id": {"type": "integer"}}}
    params = ModelRequestParameters(
        function_tools=[
            ToolDefinition(
                name="lookup_order", parameters_json_schema=schema, description="Look up"
            )
        ],
        output_tools=[
            ToolDefinition(
                name="final_result", parameters_json_schema={"type": "object"}, kind="output"
            )
        ],
        allow_text_output=False,
    )
    specs = to_tool_specs(params)
    assert [s.name for s in specs] == ["lookup_order", "final_result"]
    assert specs[0].parameters == schema and specs[0].description == "Look up"


def test_a_journaled_reply_becomes_the_same_response_every_time():
    reply = {
        "content": "ok",
        "tool_calls": [{"id": "c9", "name": "final_result", "arguments": {"answer": "hi"}}],
        "model": "sim:strong",
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
        "cost_usd": 0.0,
        "fallback_from": [],
    }
    first, again = to_response(reply, timestamp=WHEN), to_response(reply, timestamp=WHEN)
    assert first == again  # a replayed response is equal, field for field
    text, call = first.parts
    assert isinstance(text, TextPart) and text.content == "ok"
    assert isinstance(call, ToolCallPart)
    assert (call.tool_name, call.tool_call_id, call.args_as_dict()) == (
        "final_result", "c9", {"answer": "hi"},
    )  # fmt: skip
    assert (first.usage.input_tokens, first.usage.output_tokens) == (12, 3)
    assert first.model_name == "sim:strong" and first.timestamp == WHEN


def _agent() -> Agent[None, str]:
    agent: Agent[None, str] = Agent()

    @agent.tool_plain
    def lookup(order_id: int) -> int:
        return order_id

    @agent.tool_plain(requires_approval=True)
    def wipe(order_id: int) -> str:
        return "wiped"

    return agent


POLICIES = {"lookup": ToolPolicy(scopes=["r"]), "wipe": ToolPolicy(scopes=["w"])}


def test_the_declaration_builds_stalwart_tools_with_the_same_parameters():
    spec = PydanticAIAgent(name="a", agent=_agent(), model="main", policies=POLICIES)
    tools = {t.name: t for t in spec.tools}
    assert set(tools) == {"lookup", "wipe"}
    assert tools["lookup"].scopes == {"r"}
    assert tools["lookup"].spec.parameters["properties"] == {
        "order_id": {"title": "Order Id", "type": "integer"}
    }
    assert tools["lookup"].validate({"order_id": "7"}) == {"order_id": 7}


def test_requires_approval_holds_the_tool_in_stalwarts_approval_queue():
    spec = PydanticAIAgent(name="a", agent=_agent(), model="main", policies=POLICIES)
    rule = spec.security.taint.tools["wipe"]
    decision = spec.security.taint.decide("wipe", {"order_id": 1}, Provenance(), side_effect=False)
    assert rule.sensitive is True
    assert decision.verdict == "approve" and "requires_approval" in decision.reason
    allowed = spec.security.taint.decide("lookup", {"order_id": 1}, Provenance(), side_effect=False)
    assert allowed.verdict == "allow"


def test_a_side_effect_tool_takes_the_idempotency_key_hidden_from_the_model():
    policies = {**POLICIES, "wipe": ToolPolicy(scopes=["w"], side_effect=True)}
    spec = PydanticAIAgent(name="a", agent=_agent(), model="main", policies=policies)
    wipe = next(t for t in spec.tools if t.name == "wipe")
    assert wipe.side_effect and "idempotency_key" not in wipe.spec.parameters["properties"]
    with pytest.raises(ConfigError, match="only set inside a side-effect tool"):
        idempotency_key()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"policies": {"lookup": ToolPolicy()}}, r"\['wipe'\] have no ToolPolicy"),
        ({"policies": {**POLICIES, "gone": ToolPolicy()}}, r"\['gone'\], which are not tools"),
        ({"policies": POLICIES, "model": None}, "model chain"),
        ({"policies": POLICIES, "agent": object()}, "must be a pydantic_ai.Agent"),
    ],
)
def test_a_declaration_that_cannot_be_hosted_safely_is_refused(kwargs, match):
    args = {"name": "a", "agent": _agent(), "model": "main", **kwargs}
    with pytest.raises(ConfigError, match=match):
        PydanticAIAgent(**args)
