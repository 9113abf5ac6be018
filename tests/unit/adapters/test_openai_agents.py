"""stalwart.adapters.openai_agents: conversions, tool binding, replay, divergence, approvals.

The SDK's loop runs for real here, over a real SQLite store, against a scripted model
client (a function answering each request, counting what reached it)."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest
from agents import Agent, AgentOutputSchema, WebSearchTool, function_tool, handoff
from agents.items import ResponseFunctionToolCall, ResponseOutputMessage
from pydantic import BaseModel

from stalwart.adapters.openai_agents import OpenAIAgentsAgent, ToolPolicy
from stalwart.adapters.openai_agents._convert import (
    items_to_messages,
    reply_to_response,
    response_format,
    tool_specs,
)
from stalwart.agent import Resources, TaskContext
from stalwart.agent._guarded import prepare_input
from stalwart.durable import Runner, SQLiteStore
from stalwart.errors import ConfigError, NonDeterminismError
from stalwart.guard import ApprovalQueue
from stalwart.llm import Message, ModelRequest, ModelResponse, ToolCall, Usage
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry

# -- conversions -----------------------------------------------------------------------------


def test_items_become_chat_messages_with_text_content_and_tool_calls() -> None:
    items: list[Any] = [
        {"role": "user", "content": [{"type": "input_text", "text": "refund order #4"}]},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "lookup",
            "arguments": '{"order_id": 4}',
        },
        {"type": "function_call_output", "call_id": "c1", "output": '{"amount": 9}'},
    ]
    messages = items_to_messages("Be brief.", items)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1] == {"role": "user", "content": "refund order #4"}
    assert messages[2]["role"] == "assistant"
    assert messages[2]["tool_calls"] == [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"order_id": 4}'},
        }
    ]
    assert messages[3] == {"role": "tool", "content": '{"amount": 9}', "tool_call_id": "c1"}
    assert items_to_messages(None, "hello") == [{"role": "user", "content": "hello"}]


def test_a_non_text_part_is_refused_with_what_to_do() -> None:
    image = {"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}
    with pytest.raises(ConfigError, match="text only"):
        items_to_messages(None, [image])  # type: ignore[list-item]


@function_tool
def lookup(order_id: int) -> str:
    """Look an order up.

    Args:
        order_id: The order.
    """
    return f"order {order_id}"


def test_function_tools_and_handoffs_become_tool_specs_and_hosted_tools_are_refused() -> None:
    billing = Agent(name="Billing", instructions="billing")
    specs = tool_specs([lookup], [handoff(billing)])
    assert [s.name for s in specs] == ["lookup", "transfer_to_billing"]
    assert specs[0].parameters["properties"]["order_id"]["type"] == "integer"
    assert specs[0].description == "Look an order up."
    with pytest.raises(ConfigError, match="hosted tool"):
        tool_specs([WebSearchTool()], [])


class Verdict(BaseModel):
    approved: bool
    reason: str


def test_structured_output_asks_for_the_output_types_schema() -> None:
    fmt = response_format(AgentOutputSchema(Verdict))
    assert fmt is not None and fmt.name == "final_output" and fmt.strict
    assert set(fmt.schema["properties"]) == {"approved", "reason"}
    assert response_format(AgentOutputSchema(str)) is None
    assert response_format(None) is None


def test_a_reply_becomes_the_sdks_output_items_and_back_into_the_same_messages() -> None:
    reply = {
        "content": "Looking it up.",
        "tool_calls": [{"id": "call_7", "name": "lookup", "arguments": {"order_id": 7}}],
        "model": "sim:strong",
        "usage": {"prompt_tokens": 30, "completion_tokens": 5},
    }
    response = reply_to_response(reply)
    text = [i for i in response.output if isinstance(i, ResponseOutputMessage)]
    calls = [i for i in response.output if isinstance(i, ResponseFunctionToolCall)]
    assert text[0].content[0].text == "Looking it up."  # type: ignore[union-attr]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_7", "lookup", {"order_id": 7})
    ]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 5)
    assert response.usage.requests == 1
    # the same reply gives the same items (replay takes the same path)
    assert reply_to_response(reply).output == response.output
    back = items_to_messages(None, response.to_input_items())
    assert back == [
        {
            "role": "assistant",
            "content": "Looking it up.",
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"order_id": 7}'},
                }
            ],
        }
    ]


# -- tool binding ----------------------------------------------------------------------------


def test_a_policy_for_a_tool_the_agent_lacks_is_a_config_error() -> None:
    agent = Agent(name="A", tools=[lookup])
    with pytest.raises(ConfigError, match="does not have"):
        OpenAIAgentsAgent(name="a", agent=agent, model="m", tool_policies={"nope": ToolPolicy()})


def test_an_sdk_timeout_on_a_tool_is_refused_with_the_policy_to_use() -> None:
    """The SDK's own tool timeout cancels the call from outside the journal (a side effect
    left started, a resume that differs): binding refuses it and names the ToolPolicy
    that gives stalwart the deadline instead."""

    @function_tool(timeout=12)
    async def slow_refund(order_id: int) -> str:
        """Refund an order."""
        return "ok"

    refused = r"slow_refund.*timeout_seconds=12.*ToolPolicy\(timeout=12\)"
    with pytest.raises(ConfigError, match=refused):
        OpenAIAgentsAgent(name="a", agent=Agent(name="A", tools=[slow_refund]), model="m")
    slow_refund.timeout_seconds = None  # as the error says: the deadline goes to stalwart
    bound = OpenAIAgentsAgent(
        name="a",
        agent=Agent(name="A", tools=[slow_refund]),
        model="m",
        tool_policies={"slow_refund": ToolPolicy(timeout=12)},
    )
    assert [t.timeout for t in bound.tools] == [12.0]


def test_a_model_object_on_the_sdk_agent_is_refused() -> None:
    from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
    from openai import AsyncOpenAI

    model = OpenAIChatCompletionsModel(
        "gpt-4o", AsyncOpenAI(api_key="x", base_url="http://127.0.0.1:9")
    )
    with pytest.raises(ConfigError, match="Model object"):
        OpenAIAgentsAgent(name="a", agent=Agent(name="A", model=model), model="m")


async def test_outside_a_stalwart_task_a_bound_tool_runs_as_the_sdk_runs_it() -> None:
    from agents.tool_context import ToolContext

    @function_tool
    def double(n: int) -> int:
        """Twice n.

        Args:
            n: a number.
        """
        return 2 * n

    OpenAIAgentsAgent(name="a", agent=Agent(name="A", tools=[double]), model="m")
    context = ToolContext(None, tool_name="double", tool_call_id="c", tool_arguments='{"n": 4}')
    assert await double.on_invoke_tool(context, '{"n": 4}') == 8


# -- a real SDK run over a real store --------------------------------------------------------

Handler = Callable[[ModelRequest], Message]


class ScriptedClient:
    """A model client answering with ``handler``; ``calls`` counts what reached it."""

    name = "scripted:model"

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls = 0

    async def complete(
        self, request: ModelRequest, *, timeout: float | None = None
    ) -> ModelResponse:
        self.calls += 1
        message = self.handler(request)
        return ModelResponse("scripted:model", message, "stop", Usage(10, 2), 0.0, 0.001)

    async def aclose(self) -> None:
        return None


def support_script(request: ModelRequest) -> Message:
    """Look the order up, refund it, then answer (by what the conversation holds)."""
    tool_results = [m for m in request.messages if m.role == "tool"]
    if len(tool_results) == 0:
        return Message("assistant", "", (ToolCall("call_1", "find_order", {"order_id": 42}),))
    if len(tool_results) == 1:
        refund = ToolCall("call_2", "pay_back", {"order_id": 42, "amount_cents": 300})
        return Message("assistant", "", (refund,))
    return Message("assistant", f"done: {tool_results[-1].content}")


DELIVERED: list[str] = []


@function_tool
def find_order(order_id: int) -> dict[str, Any]:
    """Find an order.

    Args:
        order_id: The order.
    """
    return {"order_id": order_id, "amount_cents": 900}


@function_tool
def pay_back(order_id: int, amount_cents: int) -> str:
    """Refund an order.

    Args:
        order_id: The order.
        amount_cents: How much.
    """
    DELIVERED.append(f"{order_id}:{amount_cents}")
    return f"refunded {amount_cents}"


class Harness:
    """One stalwart agent process's worth of state for an OpenAIAgentsAgent, in this process."""

    def __init__(self, store: SQLiteStore, agent: OpenAIAgentsAgent, client: ScriptedClient,
                 approvals: ApprovalQueue | None = None) -> None:  # fmt: skip
        self.agent = agent
        self.resources = Resources(
            agent=agent.name,
            models={"main": client},
            tools=ToolRegistry(agent.tools, breakers=BreakerRegistry()),
            scopes=frozenset(agent.scopes),
            callable_agents=frozenset(),
            runtime=None,
            events=EventBus(log=False),
            security=agent.security,
            approvals=approvals,
        )
        self.runner = Runner(store, owner="unit", events=EventBus(log=False))

    async def workflow(self, ctx: Any, value: Any) -> Any:
        task = TaskContext(ctx, self.resources, model="main")
        assert self.agent.fn is not None
        return await self.agent.fn(task, prepare_input(task, value))


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> Any:
    s = SQLiteStore(str(tmp_path / "oai.db"))
    await s.open()
    yield s
    await s.close()


def support(**kwargs: Any) -> OpenAIAgentsAgent:
    sdk = Agent(name="Support", instructions="Help.", tools=[find_order, pay_back])
    policies = {
        "find_order": ToolPolicy(scopes=["orders:read"]),
        "pay_back": ToolPolicy(scopes=["payments:write"], side_effect=True),
    }
    return OpenAIAgentsAgent(
        name="support", agent=sdk, model="main", tool_policies=policies, **kwargs
    )


async def test_a_resumed_run_replays_every_model_and_tool_call_from_the_journal(
    store: SQLiteStore,
) -> None:
    DELIVERED.clear()
    agent = support()
    crash_at = {"n": 3}  # the third model call: after the refund, before the answer

    def crashing(request: ModelRequest) -> Message:
        crash_at["n"] -= 1
        if crash_at["n"] == 0:
            raise asyncio.CancelledError  # the process stops mid-task
        return support_script(request)

    first = ScriptedClient(crashing)
    harness = Harness(store, agent, first)
    task_id = await harness.runner.submit("support", {"text": "refund 300 cents for order #42"})
    with pytest.raises(asyncio.CancelledError):
        await harness.runner.run(task_id, harness.workflow)
    assert first.calls == 3 and DELIVERED == ["42:300"]

    second = ScriptedClient(support_script)
    resumed = Harness(store, agent, second)
    result = await resumed.runner.run(task_id, resumed.workflow)
    assert result.status == "succeeded", result.result
    assert result.result["answer"] == "done: refunded 300"
    assert second.calls == 1  # only the unanswered call: the two answered ones were replayed
    assert DELIVERED == ["42:300"]  # the refund was not sent again
    assert result.replayed_steps == 4  # model, find_order, model, pay_back


async def test_a_run_that_diverges_from_its_journal_names_the_differing_call(
    store: SQLiteStore,
) -> None:
    agent = support()

    def stop_after_lookup(request: ModelRequest) -> Message:
        if any(m.role == "tool" for m in request.messages):
            raise asyncio.CancelledError
        return support_script(request)

    harness = Harness(store, agent, ScriptedClient(stop_after_lookup))
    task_id = await harness.runner.submit("support", {"text": "refund 300 cents for order #42"})
    with pytest.raises(asyncio.CancelledError):
        await harness.runner.run(task_id, harness.workflow)

    # the code changed: the agent now looks orders up with another tool
    @function_tool
    def find_order_v2(order_id: int) -> str:
        """Find an order (new).

        Args:
            order_id: The order.
        """
        return "v2"

    changed = OpenAIAgentsAgent(
        name="support",
        agent=Agent(name="Support", tools=[find_order_v2, pay_back]),
        model="main",
        tool_policies={"pay_back": ToolPolicy(side_effect=True)},
    )

    def new_script(request: ModelRequest) -> Message:
        return Message("assistant", "", (ToolCall("call_9", "find_order_v2", {"order_id": 42}),))

    resumed = Harness(store, changed, ScriptedClient(new_script))
    result = await resumed.runner.run(task_id, resumed.workflow)
    assert result.status == "failed"
    assert result.result["type"] == NonDeterminismError.__name__
    # the differing call: its request (the tools offered changed) is not the recorded one
    assert "journal position 0" in result.result["message"]
    assert "different request than the journal recorded" in result.result["message"]


@function_tool(needs_approval=True)
def close_account(customer: str) -> str:
    """Close a customer's account.

    Args:
        customer: Who.
    """
    DELIVERED.append(f"closed:{customer}")
    return f"closed {customer}"


async def test_an_sdk_approval_parks_the_task_and_a_decision_resumes_it_in_a_new_process(
    tmp_path: pathlib.Path,
) -> None:
    DELIVERED.clear()
    sdk = Agent(name="Accounts", tools=[close_account])
    agent = OpenAIAgentsAgent(name="accounts", agent=sdk, model="main")

    def script(request: ModelRequest) -> Message:
        results = [m for m in request.messages if m.role == "tool"]
        if not results:
            return Message(
                "assistant", "", (ToolCall("call_1", "close_account", {"customer": "ann"}),)
            )
        return Message("assistant", f"result: {results[-1].content}")

    url = str(tmp_path / "acc.db")
    store = SQLiteStore(url)
    await store.open()
    queue = ApprovalQueue(f"sqlite:///{url}")
    client = ScriptedClient(script)
    harness = Harness(store, agent, client, approvals=queue)
    task_id = await harness.runner.submit("accounts", {"text": "close ann's account"})
    parked = await harness.runner.run(task_id, harness.workflow)
    assert parked.status == "awaiting_approval"
    assert DELIVERED == [] and client.calls == 1
    [held] = queue.list("pending")
    assert held.tool == "close_account" and held.arguments == {"customer": "ann"}
    await store.close()
    queue.close()

    # a person approves while nothing runs the task; a new process (new store, queue) resumes
    store = SQLiteStore(url)
    await store.open()
    queue = ApprovalQueue(f"sqlite:///{url}")
    queue.decide(held.id, approve=True, by="alice")
    assert await store.wake(task_id)
    client = ScriptedClient(script)
    harness = Harness(store, agent, client, approvals=queue)
    done = await harness.runner.run(task_id, harness.workflow)
    assert done.status == "succeeded", done.result
    assert done.result["answer"] == "result: closed ann"
    assert DELIVERED == ["closed:ann"]
    assert client.calls == 1  # the first answer came from the journal
    await store.close()
    queue.close()


# -- handoffs and structured output ------------------------------------------------------------


@function_tool
def billing_balance(customer: str) -> int:
    """A customer's balance in cents.

    Args:
        customer: Who.
    """
    return 1234


async def test_a_handoff_runs_the_other_agents_tools_and_its_structured_output(
    store: SQLiteStore,
) -> None:
    billing = Agent(
        name="Billing", instructions="Billing.", tools=[billing_balance], output_type=Verdict
    )
    triage = Agent(name="Triage", instructions="Route.", handoffs=[billing])
    agent = OpenAIAgentsAgent(
        name="triage",
        agent=triage,
        model="main",
        tool_policies={"billing_balance": ToolPolicy(scopes=["billing:read"])},
    )
    assert [t.name for t in agent.tools] == ["billing_balance"]  # the handoff's tools bound
    seen: list[ModelRequest] = []

    def script(request: ModelRequest) -> Message:
        seen.append(request)
        offered = {t.name for t in request.tools}
        if "transfer_to_billing" in offered:
            return Message("assistant", "", (ToolCall("h1", "transfer_to_billing", {}),))
        if not any(m.role == "tool" and m.tool_call_id == "b1" for m in request.messages):
            return Message(
                "assistant", "", (ToolCall("b1", "billing_balance", {"customer": "ann"}),)
            )
        return Message("assistant", json.dumps({"approved": True, "reason": "balance 1234"}))

    client = ScriptedClient(script)
    harness = Harness(store, agent, client)
    task_id = await harness.runner.submit("triage", "what is ann's balance?")
    result = await harness.runner.run(task_id, harness.workflow)
    assert result.status == "succeeded", result.result
    assert result.result["agent"] == "Billing"
    assert result.result["answer"] == {"approved": True, "reason": "balance 1234"}
    assert client.calls == 3
    # the billing agent's calls asked for its output type's schema, the triage's did not
    assert seen[0].response_format is None
    assert seen[1].response_format is not None
    assert set(seen[1].response_format.schema["properties"]) == {"approved", "reason"}
    assert seen[1].messages[0].content == "Billing."


async def test_a_tool_outside_the_granted_scopes_is_refused_and_the_model_told(
    store: SQLiteStore,
) -> None:
    DELIVERED.clear()
    agent = support(scopes=["orders:read"])  # not payments:write
    client = ScriptedClient(support_script)
    harness = Harness(store, agent, client)
    task_id = await harness.runner.submit("support", {"text": "refund 300 cents for order #42"})
    result = await harness.runner.run(task_id, harness.workflow)
    assert result.status == "succeeded", result.result
    assert DELIVERED == []  # the refund never ran
    assert '"status":"denied"' in result.result["answer"]
    assert result.result["usage"]["denied_tool_calls"] == 1


def test_the_sdks_hosted_tracing_export_is_off() -> None:
    import os

    from agents import trace
    from agents.tracing.traces import NoOpTrace

    from stalwart.adapters.openai_agents import disable_hosted_tracing

    disable_hosted_tracing()
    assert os.environ["OPENAI_AGENTS_DISABLE_TRACING"] == "1"
    assert isinstance(trace("a run"), NoOpTrace)  # nothing is recorded, so nothing exported


async def test_stalwart_runner_refuses_an_agent_whose_tools_are_not_bound(
    store: SQLiteStore,
) -> None:
    from stalwart.adapters.openai_agents import StalwartRunner

    @function_tool
    def stray(n: int) -> int:
        """A tool nobody declared.

        Args:
            n: a number.
        """
        return n

    harness = Harness(store, support(), ScriptedClient(support_script))

    async def workflow(ctx: Any, value: Any) -> Any:
        task = TaskContext(ctx, harness.resources, model="main")
        result = await StalwartRunner.run(Agent(name="Stray", tools=[stray]), value, task=task)
        return result.final_output

    task_id = await harness.runner.submit("support", "hi")
    result = await harness.runner.run(task_id, workflow)
    assert result.status == "failed"
    assert "['stray'] are not this stalwart agent's tools" in result.result["message"]


async def test_a_replayed_model_call_whose_request_changed_names_the_call(
    store: SQLiteStore,
) -> None:
    def stop_after_lookup(request: ModelRequest) -> Message:
        if any(m.role == "tool" for m in request.messages):
            raise asyncio.CancelledError
        return support_script(request)

    harness = Harness(store, support(), ScriptedClient(stop_after_lookup))
    task_id = await harness.runner.submit("support", {"text": "refund 300 cents for order #42"})
    with pytest.raises(asyncio.CancelledError):
        await harness.runner.run(task_id, harness.workflow)

    # the same tools, new instructions: the recorded answer was for another prompt
    changed = OpenAIAgentsAgent(
        name="support",
        agent=Agent(name="Support", instructions="Help, politely.", tools=[find_order, pay_back]),
        model="main",
        tool_policies={"pay_back": ToolPolicy(side_effect=True)},
    )
    client = ScriptedClient(support_script)
    resumed = Harness(store, changed, client)
    result = await resumed.runner.run(task_id, resumed.workflow)
    assert result.status == "failed"
    assert result.result["type"] == NonDeterminismError.__name__
    assert "journal position 0" in result.result["message"]
    assert "different request than the journal recorded" in result.result["message"]
    assert client.calls == 0  # the provider was not asked


async def test_under_verify_a_side_effect_tool_runs_its_double_and_its_delivery_is_counted(
    store: SQLiteStore, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    DELIVERED.clear()
    monkeypatch.setenv("STALWART_VERIFY_DIR", str(tmp_path / "verify"))
    sdk = Agent(name="Support", instructions="Help.", tools=[find_order, pay_back])

    def pay_back_double(order_id: int, amount_cents: int) -> str:
        return f"double refunded {amount_cents}"

    agent = OpenAIAgentsAgent(
        name="support",
        agent=sdk,
        model="main",
        tool_policies={
            "find_order": ToolPolicy(scopes=["orders:read"]),
            "pay_back": ToolPolicy(
                scopes=["payments:write"], side_effect=True, double=pay_back_double
            ),
        },
    )
    harness = Harness(store, agent, ScriptedClient(support_script))
    task_id = await harness.runner.submit("support", {"text": "refund 300 cents for order #42"})
    result = await harness.runner.run(task_id, harness.workflow)
    assert result.status == "succeeded", result.result
    assert result.result["answer"] == "done: double refunded 300"
    assert DELIVERED == []  # the real tool did not run
    keys = (tmp_path / "verify" / "calls" / "pay_back.keys").read_text().split()
    assert len(keys) == 1  # verify counts the double's delivery by its key
