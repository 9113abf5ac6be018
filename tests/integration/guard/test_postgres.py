"""The guard's tables on a PostgreSQL store: one ledger and one approval queue per cluster."""

from __future__ import annotations

import concurrent.futures
import multiprocessing

import pytest
from tests.integration.guard.budget_worker import spend
from tests.unit.guard.test_budget_held import exercise

from stalwart.errors import BudgetExceeded
from stalwart.guard import ApprovalQueue, Budget, SpendLedger


def test_four_processes_share_one_postgres_day_limit(pg_url) -> None:
    SpendLedger(pg_url).close()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        totals = [f.result(timeout=120) for f in [pool.submit(spend, pg_url, w) for w in range(4)]]
    ledger = SpendLedger(pg_url)
    try:
        assert sum(totals) <= 1.0 + 1e-9
        assert ledger.spent("day", "*") == pytest.approx(sum(totals))
        assert sum(totals) >= 1.0 - 0.03 - 1e-9
    finally:
        ledger.close()


async def test_task_limit_and_approvals_on_postgres(pg_url) -> None:
    ledger = SpendLedger(pg_url)
    budget = Budget(task_usd=0.1, wait_s=0)
    r = await ledger.reserve(budget, agent="a", task_id="t", amount_usd=0.08)
    with pytest.raises(BudgetExceeded):
        await ledger.reserve(budget, agent="a", task_id="t", amount_usd=0.08)
    await ledger.settle(r, 0.01)
    assert ledger.spent("task", "t") == pytest.approx(0.01)
    ledger.close()
    queue = ApprovalQueue(pg_url)
    a = queue.submit(task_id="t", agent="a", tool="refund", arguments={"n": 1}, reason="r")
    assert queue.submit(task_id="t", agent="a", tool="refund", arguments={"n": 1}, reason="r") == a
    assert queue.decide(a.id, approve=False).status == "denied"
    queue.close()


def test_a_dead_holder_is_charged_on_postgres(pg_url) -> None:
    """charge_holder's SQL (substr with a bound length) runs on PostgreSQL as on SQLite."""
    dead, node = SpendLedger(pg_url, holder="node_1/7"), SpendLedger(pg_url)
    try:
        budget = Budget(day_usd=10.0, wait_s=0)
        before = node.spent("day", "*")
        dead.reserve_sync(budget, agent="a", task_id="pg-dead", amount_usd=0.5)
        assert node.charge_holder("node_1/7") == (1, pytest.approx(0.5))
        assert node.reserved("task", "pg-dead") == 0
        assert node.spent("day", "*") == pytest.approx(before + 0.5)
    finally:
        dead.close()
        node.close()


async def test_every_held_counter_equals_its_live_reservations_on_postgres(pg_url) -> None:
    """The held counters' SQL (DELETE ... RETURNING, the upserts, the reconcile) on
    PostgreSQL, under the same random operations as on SQLite."""
    await exercise(pg_url, seed=11, operations=150)
