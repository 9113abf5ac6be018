"""The spend ledger: limits per task, agent and day, alerts, day rollover, and races."""

from __future__ import annotations

import asyncio
import re

import pytest

from stalwart.errors import BudgetExceeded, ConfigError
from stalwart.guard import ApprovalQueue, Budget, SpendLedger
from stalwart.observe import REGISTRY, EventBus
from stalwart.testing import FakeClock


def ledger(tmp_path, clock=None, events=None) -> SpendLedger:
    return SpendLedger(f"sqlite:///{tmp_path}/l.db", clock=clock or FakeClock(), events=events)


def used_ratio(scope: str) -> float | None:
    return REGISTRY.get_sample_value("stalwart_budget_used_ratio", {"scope": scope})


async def test_a_refusal_holds_the_gauge_at_one_while_cheaper_tasks_settle(tmp_path) -> None:
    """An alert evaluator sampling every few seconds must see a refusal even when other
    tasks settle lower ratios right after it: the gauge reads 1 for refusal_hold_s."""
    clock = FakeClock()
    led = ledger(tmp_path, clock)
    assert led.refusal_hold_s == 10.0
    budget = Budget(task_usd=1.0, wait_s=0)
    cheap = await led.reserve(budget, agent="a", task_id="cheap", amount_usd=0.5)
    with pytest.raises(BudgetExceeded):
        await led.reserve(budget, agent="a", task_id="costly", amount_usd=1.5)
    await led.settle(cheap, 0.2)  # another task, a moment later, at 20 % of its limit
    assert used_ratio("task") == 1.0
    clock.advance(9.9)
    assert used_ratio("task") == 1.0
    clock.advance(0.2)  # the hold has passed: the gauge reads the last settle, unprompted
    assert used_ratio("task") == pytest.approx(0.2)
    led.close()


def test_a_negative_refusal_hold_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="refusal_hold_s"):
        SpendLedger(f"sqlite:///{tmp_path}/l.db", refusal_hold_s=-1)


async def test_task_limit_reserves_the_worst_case_and_settles(tmp_path) -> None:
    events = EventBus(log=False)
    led = ledger(tmp_path, events=events)
    budget = Budget(task_usd=1.0, wait_s=0)
    r1 = await led.reserve(budget, agent="a", task_id="t1", amount_usd=0.6)
    with pytest.raises(BudgetExceeded) as info:  # 0.6 held + 0.6 could cross 1.0
        await led.reserve(budget, agent="a", task_id="t1", amount_usd=0.6)
    assert info.value.limit_scope == "task"
    assert events.recent("budget_exceeded")[0]["severity"] == "critical"
    assert used_ratio("task") == 1.0
    await led.settle(r1, 0.1)
    await led.reserve(budget, agent="a", task_id="t1", amount_usd=0.6)  # room again
    assert led.spent("task", "t1") == pytest.approx(0.1)
    await led.reserve(budget, agent="a", task_id="t2", amount_usd=0.9)  # another task
    led.close()


async def test_warning_at_80_percent(tmp_path) -> None:
    events = EventBus(log=False)
    led = ledger(tmp_path, events=events)
    budget = Budget(agent_usd=10.0)
    r = await led.reserve(budget, agent="a", task_id="t", amount_usd=9.0)
    await led.settle(r, 8.5)
    warning = events.recent("budget_warning")
    assert warning and warning[0]["scope"] == "agent" and warning[0]["severity"] == "warning"
    assert used_ratio("agent") == pytest.approx(0.85)
    led.close()


async def test_day_counters_survive_restarts_and_roll_over(tmp_path) -> None:
    clock = FakeClock(wall_start=1_700_000_000.0)  # 2023-11-14 22:13 UTC
    budget = Budget(day_usd=1.0, agent_usd=5.0)
    led = ledger(tmp_path, clock)
    r = await led.reserve(budget, agent="a", task_id="t", amount_usd=0.9)
    await led.settle(r, 0.9)
    led.close()
    again = ledger(tmp_path, clock)  # a restart: same file, same day
    with pytest.raises(BudgetExceeded) as info:
        await again.reserve(budget, agent="b", task_id="u", amount_usd=0.2)
    assert info.value.limit_scope == "day"
    clock.advance(2 * 3600)  # past midnight UTC
    await again.reserve(budget, agent="b", task_id="u", amount_usd=0.2)
    again.close()


async def test_64_racing_tasks_never_spend_more_than_the_limit(tmp_path) -> None:
    budget = Budget(day_usd=1.0, wait_s=0)
    ledgers = [ledger(tmp_path) for _ in range(4)]  # as if four processes
    spent = 0.0
    refused = 0

    async def task(i: int) -> None:
        nonlocal spent, refused
        led = ledgers[i % 4]
        while True:
            try:
                r = await led.reserve(budget, agent="a", task_id=f"t{i}", amount_usd=0.03)
            except BudgetExceeded:
                refused += 1
                return
            await asyncio.sleep(0)
            await led.settle(r, 0.025)
            spent += 0.025

    await asyncio.gather(*(task(i) for i in range(64)))
    assert refused == 64
    assert spent <= 1.0 + 1e-9
    assert ledgers[0].spent("day", "*") == pytest.approx(spent)
    assert spent >= 1.0 - 0.03 - 1e-9  # and the budget was used, not wasted
    for led in ledgers:
        led.close()


def test_approval_queue(tmp_path) -> None:
    q = ApprovalQueue(f"sqlite:///{tmp_path}/a.db")
    a = q.submit(
        task_id="t", agent="r", tool="refund", arguments={"to": "x@y.example.com"}, reason="r"
    )
    assert (
        q.submit(
            task_id="t", agent="r", tool="refund", arguments={"to": "x@y.example.com"}, reason="r"
        ).id
        == a.id
    )
    assert [x.id for x in q.list("pending")] == [a.id]
    assert "x@y" not in str(a.as_dict()) and "x@y" in str(a.as_dict(reveal=True))
    assert q.decide(a.id, approve=True, by="ann").status == "approved"
    with pytest.raises(Exception, match="already approved"):
        q.decide(a.id, approve=False)
    q.close()


def test_the_prompt_estimate_is_never_below_a_real_tokenizer() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from stalwart.durable import TiktokenCounter
    from stalwart.guard import estimate_tokens
    from stalwart.llm.sim import count_tokens

    counter = TiktokenCounter()
    samples = [
        "Where is my order #4521? It has been a week.",
        "我的订单在哪里？已经一个星期了。" * 20,  # noqa: RUF001
        "def f(x):\n    return {'a': [1, 2, 3]}\n" * 30,
        "😀🎉🚀" * 100,
        "a1B2c3D4" * 200,
    ]

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.text(max_size=400), min_size=1, max_size=5))
    def check(texts: list[str]) -> None:
        messages = [{"role": "user", "content": t} for t in texts]
        estimate = estimate_tokens(messages)
        assert estimate >= sum(counter.count(t) + 4 for t in texts)
        assert estimate >= sum(count_tokens(t) + 4 for t in texts)  # the sim's own count

    check()
    for text in samples:
        messages = [{"role": "user", "content": text}]
        assert estimate_tokens(messages) >= counter.count(text) + 4


async def test_a_dead_holders_calls_are_charged_their_worst_case_once(tmp_path) -> None:
    """What the node does when an agent process exits mid-call (see node/_charge.py)."""
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/l.db"
    dead = SpendLedger(url, clock=clock, holder="node_1/101")
    alive = SpendLedger(url, clock=clock, holder="node_1/102")
    node = SpendLedger(url, clock=clock)
    budget = Budget(task_usd=1.0, day_usd=10.0, wait_s=0)
    await dead.reserve(budget, agent="a", task_id="t1", amount_usd=0.4)
    await dead.reserve(budget, agent="a", task_id="t2", amount_usd=0.3)
    kept = await alive.reserve(budget, agent="a", task_id="t3", amount_usd=0.2)
    assert node.reserved("day", "*") == pytest.approx(0.9)
    # holders are whole names: "node_1/1" is a text prefix of "node_1/101", not its holder,
    # and "_" in a node id is no wildcard
    assert node.charge_holder("node_1/1") == (0, 0.0)
    assert node.charge_holder("node%1/101") == (0, 0.0)
    calls, usd = node.charge_holder("node_1/101")
    assert (calls, usd) == (2, pytest.approx(0.7))
    assert node.reserved("day", "*") == pytest.approx(0.2)  # only the live holder's call
    assert node.spent("day", "*") == pytest.approx(0.7)  # the worst case, on every counter
    assert node.spent("task", "t1") == pytest.approx(0.4)
    assert node.reserved("task", "t1") == 0
    assert node.charge_holder("node_1/101") == (0, 0.0)  # charged once only
    await alive.settle(kept, 0.05)
    assert node.spent("day", "*") == pytest.approx(0.75)
    for led in (dead, alive, node):
        led.close()


def test_a_holder_with_the_separator_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="holder"):
        SpendLedger(f"sqlite:///{tmp_path}/l.db", holder="a|b")


async def test_a_reservation_settled_twice_is_counted_once(tmp_path) -> None:
    """A settle committed with a model call's journal entry can race the cancel path's
    settle of the same reservation: the second finds it gone and adds nothing."""
    led = ledger(tmp_path)
    budget = Budget(task_usd=1.0, agent_usd=5.0, wait_s=0)
    res = await led.reserve(budget, agent="a", task_id="t", amount_usd=0.4)
    await led.settle(res, 0.1, tokens=50)
    await led.settle(res, 0.4)  # the cancel path's worst-case charge, too late
    assert led.spent("task", "t") == pytest.approx(0.1)
    assert led.spent("agent", "a") == pytest.approx(0.1)
    assert led.reserved("task", "t") == 0.0
    led.close()


def test_a_settle_ends_its_rows_by_their_ids_not_by_scanning_every_reservation(
    tmp_path, monkeypatch
):
    # a settle's DELETE once matched substr(id, ...): it read every live reservation of the
    # ledger, and a node with 1,000 calls in flight holds about 3,000 rows
    import sqlite3

    from stalwart.guard import _budget

    ended: list[int] = []
    real = _budget._end_rows

    def end_rows(count: int) -> str:
        ended.append(count)
        return real(count)

    monkeypatch.setattr(_budget, "_end_rows", end_rows)
    spend = ledger(tmp_path)
    limits = Budget(task_usd=1.0, agent_usd=5.0, day_usd=10.0)
    held = [
        spend.reserve_sync(limits, agent="a", task_id=f"t{n}", amount_usd=0.01) for n in range(20)
    ]
    spend.settle_sync(held[7], 0.004)
    assert ended == [3]  # its three rows (task, agent, day), by id
    spend.close()
    with sqlite3.connect(tmp_path / "l.db") as db:
        assert db.execute("SELECT COUNT(*) FROM guard_reservations").fetchone() == (57,)
        plan = " ".join(
            row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + real(3), ("a", "b", "c"))
        )
    assert re.match(r"SEARCH guard_reservations USING (COVERING )?INDEX \S+ \(id=\?\)", plan), plan
