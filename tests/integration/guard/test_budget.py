"""Acceptance 5 through the agent loop: limits stop tasks before they are crossed, alerts
fire, and 64 concurrent tasks on one limit never spend more than it."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from examples.helpdesk.app import RESOLVER, SCENARIO

from stalwart.agent import App, Resources, TaskContext, run_llm_agent
from stalwart.agent._guarded import build_rate_limiters
from stalwart.agent._setup import build_models
from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.db._metrics import COMMITS
from stalwart.durable import Runner, SQLiteStore
from stalwart.errors import RateLimited
from stalwart.guard import Budget, RateLimit, RedactingEventBus, Security, SpendLedger
from stalwart.llm import Price, PriceTable
from stalwart.llm.sim import SimServer
from stalwart.observe import REGISTRY, AlertEvaluator, default_rules
from stalwart.resilience import BreakerRegistry
from stalwart.testing import FakeClock
from stalwart.tools import ToolRegistry

TICKET = "Hi, my order #4521 arrived damaged. Please issue a refund of 1250 cents. from a@b.example"


@pytest.fixture
def sim(monkeypatch):
    with SimServer(scenario=SCENARIO) as server:
        monkeypatch.setenv("STALWART_SIM_URL", server.url)
        yield server


async def run_tasks(
    tmp_path, sim, budget: Budget, count: int, agent_name: str = "resolver", rate=None,
    prices=None, ledger_file: str = "b.db", clock: Clock = SYSTEM_CLOCK,
):  # fmt: skip
    db = tmp_path / "b.db"
    store = SQLiteStore(str(db))
    await store.open()
    events = RedactingEventBus(log=False, keep=10_000)
    agent = dataclasses.replace(
        RESOLVER, name=agent_name, security=Security(budget=budget, rate=rate)
    )
    app = App(agents=[agent], models={"main": ["sim:strong"]}, prices=prices or {})
    models = build_models(app, {"main"}, sim.url, events)
    ledger = SpendLedger(f"sqlite:///{tmp_path / ledger_file}", events=events)
    resources = Resources(
        agent=agent.name, models=models,
        tools=ToolRegistry(agent.tools, breakers=BreakerRegistry()), scopes=frozenset(agent.scopes),
        callable_agents=frozenset(), runtime=None, events=events, security=agent.security,
        ledger=ledger, rate_limiters=build_rate_limiters(agent.security, agent.name),
        prices=PriceTable(app.prices),
    )  # fmt: skip
    runner = Runner(store, owner="budget", events=events, clock=clock)

    async def workflow(ctx, value):
        return await run_llm_agent(TaskContext(ctx, resources, model="main"), agent, value)

    async def one():
        task_id = await runner.submit(agent.name, {"text": TICKET})
        return await runner.run(task_id, workflow)

    try:
        results = await asyncio.gather(*(one() for _ in range(count)))
    except BaseException:
        ledger.close()
        raise
    finally:
        for m in models.values():
            await m.aclose()
        await store.close()
    return results, events, ledger


async def test_a_task_over_its_limit_stops_with_budget_exceeded(tmp_path, sim) -> None:
    results, events, ledger = await run_tasks(tmp_path, sim, Budget(task_usd=0.012), 1)
    (result,) = results
    assert result.status == "failed"
    assert result.result["type"] == "BudgetExceeded"
    assert "task budget" in result.result["message"]
    (exceeded,) = events.recent("budget_exceeded")
    assert exceeded["scope"] == "task" and exceeded["severity"] == "critical"
    assert ledger.spent("task", result.task_id) <= 0.012
    ledger.close()


async def test_64_tasks_racing_for_one_agent_limit_spend_at_most_it(tmp_path, sim) -> None:
    """64 tasks share one limit: together they spend at most it, and at least its warning
    share (the last calls are refused by spend, not by waiting). Each running task holds a
    reservation for its next call while its tools run, so most calls wait for others'
    to settle; on a busy machine (two CPU hogs beside the suite) some waited past the
    default ``wait_s`` of 10 s and were refused with a quarter of the limit spent: the
    wait here is long enough for the race to end by spend."""
    limit = 0.1
    budget = Budget(agent_usd=limit, wait_s=60.0)
    results, events, ledger = await run_tasks(tmp_path, sim, budget, 64)
    spent = ledger.spent("agent", "resolver")
    assert spent <= limit
    total = sum(r.result["usage"]["cost_usd"] for r in results if r.status == "succeeded")
    assert total <= limit
    stopped = [r for r in results if r.status == "failed"]
    assert stopped and all(r.result["type"] == "BudgetExceeded" for r in stopped)
    assert any(r.status == "succeeded" for r in results)
    assert events.recent("budget_warning"), (spent, {e.name for e in events.recent()})
    ledger.close()


async def test_budget_alert_rule_goes_critical(tmp_path, sim) -> None:
    await run_tasks(tmp_path, sim, Budget(day_usd=0.012), 1, agent_name="daily")
    assert REGISTRY.get_sample_value("stalwart_budget_used_ratio", {"scope": "day"}) == 1.0
    rule = next(r for r in default_rules() if r.name == "BudgetLimit")
    notices = AlertEvaluator([rule]).evaluate()
    assert any(n.severity == "critical" for n in notices)


async def test_the_agent_rate_limit_refuses_calls_past_it(tmp_path, sim) -> None:
    rate = RateLimit(requests_per_minute=2, max_wait_s=0)
    with pytest.raises(RateLimited, match="agent:limited"):  # retryable: the task stays pending
        await run_tasks(tmp_path, sim, Budget(), 1, "limited", rate=rate)


def test_four_processes_racing_for_one_day_limit_spend_at_most_it(tmp_path) -> None:
    import concurrent.futures
    import multiprocessing

    from tests.integration.guard.budget_worker import spend

    url = f"sqlite:///{tmp_path}/race.db"
    SpendLedger(url).close()  # the tables exist before the race
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        futures = [pool.submit(spend, url, w) for w in range(4)]
        totals = [f.result(timeout=90) for f in futures]
    ledger = SpendLedger(url)
    assert sum(totals) <= 1.0 + 1e-9
    assert ledger.spent("day", "*") == pytest.approx(sum(totals))
    assert sum(totals) >= 1.0 - 0.03 - 1e-9  # waiting on reservations left none unspent
    ledger.close()


async def test_app_prices_drive_the_reservation(tmp_path, sim) -> None:
    budget = Budget(task_usd=0.05)
    (cheap,), _, ledger = await run_tasks(tmp_path / "a", sim, budget, 1, "cheap")
    ledger.close()
    assert cheap.status == "succeeded"  # at the built-in price the task fits
    prices = {"sim:strong": Price(100.0, 100.0)}  # 40x the built-in price
    (dear,), _, ledger = await run_tasks(tmp_path / "b", sim, budget, 1, "dear", prices=prices)
    ledger.close()
    assert dear.status == "failed" and dear.result["type"] == "BudgetExceeded"


def _wrote() -> float:
    return float(COMMITS.labels("true")._value.get())


@pytest.mark.parametrize("ledger_file", ["b.db", "own-ledger.db"])
async def test_a_model_call_settles_with_its_journal_entry_when_they_share_a_file(
    tmp_path, sim, ledger_file
) -> None:
    """In the store's file, a model call's settle commits with its journal entry (one
    commit, not two); in a file of its own it commits on its own. Either way the task's
    spend is what its calls cost, and no reservation is left."""
    budget = Budget(task_usd=0.25, agent_usd=10.0)
    store = SQLiteStore(str(tmp_path / "b.db"))  # the schemas first: their writes are not counted
    await store.open()
    await store.close()
    SpendLedger(f"sqlite:///{tmp_path / ledger_file}").spent("day", "*")
    before = _wrote()
    (result,), _events, ledger = await run_tasks(
        tmp_path, sim, budget, 1, f"joins-{ledger_file}", ledger_file=ledger_file,
        clock=FakeClock(),  # never advanced: no lease renewal joins the count
    )  # fmt: skip
    wrote = _wrote() - before
    try:
        assert result.status == "succeeded"
        usage = result.result["usage"]
        assert ledger.spent("task", result.task_id) == pytest.approx(usage["cost_usd"])
        assert ledger.reserved("task", result.task_id) == 0.0
        # create, acquire, finish; one entry per step, plus "started" for each side effect
        # (the refund and the e-mail). In the store's file: one reserve, the first call's
        # (every later call follows a tool call, and its reservation was taken with the
        # settle before it); in a file of its own: a reserve and a settle per model call
        steps = usage["model_calls"] + usage["tool_calls"]
        joined = ledger_file == "b.db"
        expected = 3 + steps + 2 + (1 if joined else usage["model_calls"] * 2)
        assert wrote == expected, (wrote, usage)
    finally:
        ledger.close()
