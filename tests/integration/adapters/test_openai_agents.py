"""The OpenAI Agents SDK example on a real node, its agent process SIGKILLed at step
boundaries: same results, no model call re-made, no side effect repeated; an SDK
approval that parks its task across a node restart; and, in this process, a refund whose
ledger record, or a model answer whose journal record, cannot be written stopping the task
whatever the SDK makes of the error."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from agents import ModelSettings, UserError, function_tool
from agents.retry import ModelRetrySettings
from agents.tool_context import ToolContext
from examples.openai_agents_support import agent as support_agent
from examples.openai_agents_support.app import SCENARIO, SUPPORT, app, tickets
from tests.integration.adapters._locked import WriteLock, locked_out_run, own_sim
from tests.integration.adapters.oai_kill_app import SETTINGS, run_support

from stalwart import http_client
from stalwart.guard import ApprovalQueue
from stalwart.llm.sim import service_url
from stalwart.node import Node, app_node
from stalwart.observe import EventBus


@pytest.mark.timeout(90)
async def test_sigkilled_at_step_boundaries_it_ends_the_same_and_repeats_nothing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tickets(9, seed=3)
    clean = await run_support(tmp_path / "clean", work, kill_dir=None)
    kill_dir = tmp_path / "kills"
    kill_dir.mkdir()
    monkeypatch.setenv("OAI_KILL_DIR", str(kill_dir))
    monkeypatch.setenv("OAI_KILL_EVERY", "3")
    monkeypatch.setenv("OAI_KILL_MAX", "6")
    (tmp_path / "chaos").mkdir()
    chaotic = await run_support(tmp_path / "chaos", work, kill_dir=kill_dir)

    assert chaotic["kills"] >= 3, chaotic["kills"]
    for status, outcome in clean["results"].values():
        assert status == "succeeded" and outcome["status"] == "completed", outcome
    refunds = [o for _, o in clean["results"].values() if "Refunded" in str(o["answer"])]
    assert len(refunds) == 3  # the side-effect tool ran (every third ticket asks for one)
    # every task: the same result as the uninterrupted run
    assert chaotic["results"] == clean["results"]
    # no model call made again after a kill (counted at the simulated provider)
    assert chaotic["model_requests"] == clean["model_requests"] > 0
    # no side effect delivered twice, nor even sent twice
    payments = chaotic["tools"]
    assert payments["duplicates"]["payments"] == 0
    assert payments["requests"]["payments"] == clean["tools"]["requests"]["payments"] == 3


@pytest.mark.timeout(120)
async def test_an_sdk_approval_parks_the_task_across_a_node_restart(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = tmp_path / "closed.txt"
    monkeypatch.setenv("OAI_CLOSED", str(closed))
    store = f"sqlite:///{tmp_path}/acc.db"
    app = "tests.integration.adapters.oai_approval_app:app"
    ticket = {"text": "Please close the account of ann"}

    async def until_ready(node: Node) -> None:
        async with asyncio.timeout(60):
            while not node.ready:
                await asyncio.sleep(0.02)

    node, service = app_node(app, store=store, events=EventBus(log=False), settings=SETTINGS)

    async def first() -> None:
        await until_ready(node)
        await service.tasks.submit("accounts", ticket, task_id="close-ann")
        async with asyncio.timeout(60):
            while True:
                record = await service.tasks.get("close-ann")
                if record is not None and record.status == "awaiting_approval":
                    break
                await asyncio.sleep(0.02)

    assert await node.run(until=first()) == 0  # the node stops with the task parked
    assert not closed.exists()  # nothing ran without a person

    queue = ApprovalQueue(store)
    [held] = queue.list("pending")
    assert held.tool == "close_account" and held.arguments == {"customer": "ann"}
    queue.decide(held.id, approve=True, by="alice")  # decided while no node runs
    queue.close()

    node, service = app_node(app, store=store, events=EventBus(log=False), settings=SETTINGS)

    async def second() -> None:
        await until_ready(node)
        record = await service.tasks.wait("close-ann", timeout=60)
        assert record.status == "succeeded", record.outcome
        assert record.outcome["answer"] == "Done: closed the account of ann"

    assert await node.run(until=second()) == 0
    assert len(closed.read_text().splitlines()) == 1  # closed once, after the approval


@pytest.fixture
def _sim_of_this_test(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from own_sim(app, tmp_path, monkeypatch)


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("_sim_of_this_test")
async def test_a_refund_whose_ledger_record_fails_gives_the_task_back(
    tmp_path: pathlib.Path,
) -> None:
    """The refund went out but its ledger record could not be written (another process
    held the store's write lock past its deadline). The SDK's ``failure_error_function``
    (by default: the exception as text for the model) wraps only the tool's own function,
    which stalwart calls inside the ledgered call; the ledger's error comes out of the
    invoker stalwart put in its place, and the SDK raises it as its ``UserError``. Either
    way the failed write decides: the model is not asked again, the task is given back
    with the store's error, not failed with the SDK's, and the resumed run settles the
    refund through the ledger, once, and answers."""
    path = tmp_path / "locked.db"
    lock = WriteLock(path)
    refunds: list[int] = []

    @function_tool(name_override="refund_order")
    async def refund_then_locked_out(
        ctx: ToolContext[Any], order_id: int, amount_cents: int
    ) -> dict[str, Any]:
        """Refund part or all of an order to the customer's payment method.

        Args:
            order_id: The order's number.
            amount_cents: How much to refund, in cents.
        """
        r = await http_client().post(
            service_url("/tools/payments/refund"),
            json={"order_id": order_id, "amount_cents": amount_cents},
            headers={"Idempotency-Key": ctx.tool_call_id},
            timeout=10,
        )
        r.raise_for_status()
        refunds.append(order_id)
        if len(refunds) == 1:
            lock.take()  # the ledger's record of it cannot be written
        return dict(r.json())

    assert SUPPORT.agent is not None
    sdk = SUPPORT.agent.clone(tools=[support_agent.lookup_order, refund_then_locked_out])
    agent = dataclasses.replace(SUPPORT, agent=sdk)
    ticket = {"text": "Please refund 700 cents for order #4321."}
    out = await locked_out_run(path, app, agent, SCENARIO, ticket, chain="main", lock=lock)
    assert isinstance(out.error.__cause__, UserError)  # what the SDK made of it
    assert out.requests_before == 2  # the model was not asked again with the store's error
    assert out.result.status == "succeeded", out.result.result
    assert out.result.result["answer"] == "Refunded 700 cents for order #4321."
    assert out.requests == 3  # the resumed run: calls 1 and 2 from the journal, then the answer
    assert refunds == [4321, 4321]  # sent again with the same key, as the ledger says to
    assert out.report["duplicates"]["payments"] == 0
    assert len(out.report["deliveries"]["payments"]) == 1


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("_sim_of_this_test")
async def test_a_model_answer_not_journaled_is_not_retried_by_the_sdk(
    tmp_path: pathlib.Path,
) -> None:
    """The SDK's own model retry (``ModelSettings.retry``, here with a policy that retries
    every error) catches the store's error when a model answer arrived but its journal
    record could not be written, and asks again. The failed write stops the run first:
    the retry raises the same error without a request, the task is given back, and the
    resumed run asks for that answer again and refunds once."""
    path = tmp_path / "locked.db"
    lock = WriteLock(path)
    retried: list[str] = []

    def retry_everything(context: Any) -> bool:
        retried.append(type(context.error).__name__)
        return True

    def arm(sim: Any) -> None:
        reply = sim.world.brain.reply
        answered = {"n": 0}

        def locking(messages: Any, tools: Any, persona: str) -> Any:
            answered["n"] += 1
            if answered["n"] == 2:  # the answer asking for the refund will not be journaled
                lock.take()
            return reply(messages, tools, persona)

        sim.world.brain.reply = locking

    assert SUPPORT.agent is not None
    settings = ModelSettings(retry=ModelRetrySettings(max_retries=2, policy=retry_everything))
    agent = dataclasses.replace(SUPPORT, agent=SUPPORT.agent.clone(model_settings=settings))
    ticket = {"text": "Please refund 700 cents for order #4321."}
    out = await locked_out_run(path, app, agent, SCENARIO, ticket, chain="main", lock=lock, arm=arm)
    assert retried == ["StoreUnavailable", "StoreUnavailable"]  # the SDK retried, twice
    assert out.requests_before == 2  # ... and the model was not asked again
    assert out.result.status == "succeeded", out.result.result
    assert out.result.result["answer"] == "Refunded 700 cents for order #4321."
    assert out.requests == 4  # the resumed run asked for answer 2 again (never journaled)
    assert out.report["duplicates"]["payments"] == 0
    assert len(out.report["deliveries"]["payments"]) == 1
