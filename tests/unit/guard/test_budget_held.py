"""The spend ledger's held counters (guard_held): what live reservations hold of each
counter, kept by every reservation and every end of one, and reconciled now and then."""

from __future__ import annotations

import random
import re
import sqlite3
import time
from typing import Any

import pytest

from stalwart.errors import BudgetExceeded
from stalwart.guard import Budget, Reservation, SpendLedger
from stalwart.guard._budget import _used_of
from stalwart.guard._db import _V1, COMPONENT
from stalwart.testing import FakeClock

LIMITS = Budget(task_usd=5.0, agent_usd=50.0, day_usd=100.0, wait_s=0)


def held_by_counter(ledger: SpendLedger) -> tuple[dict[Any, float], dict[Any, float]]:
    """(the agents' and days' counters as kept, the same summed from the live rows),
    zeros left out (a task's counter is not kept: its rows are summed)."""
    kept = {
        tuple(r[:3]): float(r[3])
        for r in ledger._conn.execute(
            "SELECT scope, key, period, held_usd FROM guard_held"
        ).fetchall()
        if abs(float(r[3])) > 1e-12
    }
    rows = {
        tuple(r[:3]): float(r[3])
        for r in ledger._conn.execute(
            "SELECT scope, key, period, SUM(amount_usd) FROM guard_reservations "
            "WHERE created > 0 AND scope <> 'task' GROUP BY scope, key, period"
        ).fetchall()
    }
    return kept, rows


def assert_counters_match_rows(ledger: SpendLedger) -> None:
    kept, rows = held_by_counter(ledger)
    assert kept.keys() == rows.keys()
    for counter, usd in rows.items():
        assert kept[counter] == pytest.approx(usd, abs=1e-9), counter


async def exercise(url: str, seed: int = 7, operations: int = 300) -> None:
    """Random reservations, settles (twice, too), settles taking the next call's
    reservation, reservations replacing one taken ahead, dead holders charged, and time
    passing past ``stale_after``, over three holders of one ledger; after each, every
    counter equals what its live rows hold, and what is left held at the end is what the
    unsettled reservations hold."""
    clock = FakeClock()
    stale = 600.0
    holders = [SpendLedger(url, clock=clock, holder=f"n/{h}", stale_after=stale) for h in range(3)]
    node = SpendLedger(url, clock=clock, stale_after=stale)
    rng = random.Random(seed)
    live: list[tuple[SpendLedger, Reservation]] = []
    done: list[tuple[SpendLedger, Reservation]] = []
    try:
        for _ in range(operations):
            op = rng.random()
            led = rng.choice(holders)
            task = f"t{rng.randrange(20)}"
            if op < 0.35 or not live:
                res = led.reserve_sync(
                    LIMITS, agent="a", task_id=task, amount_usd=rng.uniform(0.001, 0.05)
                )
                assert res is not None
                live.append((led, res))
            elif op < 0.55:
                led, res = live.pop(rng.randrange(len(live)))
                led.settle_sync(res, rng.uniform(0, res.amount_usd))
                done.append((led, res))
            elif op < 0.7:  # settle, taking the next call's reservation (as the loop does)
                led, res = live.pop(rng.randrange(len(live)))
                fn, args, plan = led.settle_ahead_program(
                    res, rng.uniform(0, res.amount_usd), 10, LIMITS, agent="a",
                    task_id=task, amount_usd=rng.uniform(0.001, 0.05),
                )  # fmt: skip
                taken = led.settled_ahead(res, plan, led._conn.run(fn, *args, exclusive=True))
                done.append((led, res))
                if taken is not None:
                    live.append((led, taken))
            elif op < 0.8:  # a call whose prompt outgrew the reservation taken ahead
                led, ahead = live.pop(rng.randrange(len(live)))
                res = await led.reserve(
                    LIMITS, agent="a", task_id=task, amount_usd=rng.uniform(0.001, 0.05),
                    replacing=ahead,
                )  # fmt: skip
                live.append((led, res))
                done.append((led, ahead))
            elif op < 0.86 and done:  # a settle that raced another: adds nothing
                led, res = rng.choice(done)
                led.settle_sync(res, res.amount_usd)
            elif op < 0.9:
                dead = rng.choice(holders)
                node.charge_holder(dead.holder or "")
                done.extend(x for x in live if x[0] is dead)
                live = [x for x in live if x[0] is not dead]
            else:
                clock.advance(rng.uniform(0, stale / 2))
            assert_counters_match_rows(node)
        # what is held now: the unsettled reservations younger than stale_after (the
        # rest stop counting at the next reconcile)
        clock.advance(SpendLedger.RECONCILE_S)
        holders[0].reserve_sync(Budget(), agent="a", task_id="reconcile", amount_usd=0.0)
        young = [r for _, r in live if _created(node, r) > clock.time() - stale]
        assert node.reserved("day", "*") == pytest.approx(sum(r.amount_usd for r in young))
        assert_counters_match_rows(node)
    finally:
        for led in (*holders, node):
            led.close()


def _created(ledger: SpendLedger, res: Reservation) -> float:
    row = ledger._conn.execute(
        "SELECT created FROM guard_reservations WHERE id = ?", (f"{res.id}:day",)
    ).fetchone()
    return float(row[0]) if row else float("-inf")


async def test_every_counter_equals_what_its_live_reservations_hold(tmp_path) -> None:
    await exercise(f"sqlite:///{tmp_path}/l.db")


def test_a_check_reads_the_counters_not_every_live_reservation(tmp_path) -> None:
    """The check's statement: primary-key reads of guard_spend, and of guard_held for the
    agent's and the day's counters; only the task's own rows are read, by their index."""
    SpendLedger(f"sqlite:///{tmp_path}/l.db").reserve_sync(
        LIMITS, agent="a", task_id="t", amount_usd=0.01
    )
    counter = r"USING ((COVERING )?INDEX \S+|PRIMARY KEY) \(scope=\? AND key=\? AND period=\?\)"
    params = ("s", "k", "p") * 6 + (0.0,)
    with sqlite3.connect(tmp_path / "l.db") as db:
        plan = [
            row[-1]
            for row in db.execute(
                "EXPLAIN QUERY PLAN " + _used_of(("task", "agent", "day")), params
            )
            if row[-1].startswith(("SEARCH", "SCAN")) and row[-1] != "SCAN CONSTANT ROW"
        ]
    tables = sorted(re.sub(r"^SEARCH (\w+) .*", r"\1", step) for step in plan)
    assert tables == ["guard_held"] * 2 + ["guard_reservations"] + ["guard_spend"] * 3, plan
    for step in plan:
        assert re.search(counter, step), plan


async def test_a_stale_reservation_stops_counting_and_its_late_settle_still_counts(
    tmp_path,
) -> None:
    clock = FakeClock()
    url = f"sqlite:///{tmp_path}/l.db"
    lost = SpendLedger(url, clock=clock, holder="gone/1", stale_after=3600)
    led = SpendLedger(url, clock=clock, stale_after=3600)
    day = Budget(day_usd=1.0, wait_s=0)
    orphan = lost.reserve_sync(day, agent="a", task_id="t1", amount_usd=0.4)
    assert orphan is not None
    with pytest.raises(BudgetExceeded):
        led.reserve_sync(day, agent="a", task_id="t2", amount_usd=0.7)
    clock.advance(3601)  # its holder's whole node died: never settled, never charged
    taken = led.reserve_sync(day, agent="a", task_id="t2", amount_usd=0.7)
    assert taken is not None
    assert led.reserved("day", "*") == pytest.approx(0.7)
    lost.settle_sync(orphan, 0.25)  # it settles after all, late: its cost still counts
    assert led.spent("day", "*") == pytest.approx(0.25)
    assert led.reserved("day", "*") == pytest.approx(0.7)  # and it took nothing held
    assert_counters_match_rows(led)
    with pytest.raises(BudgetExceeded):
        led.reserve_sync(day, agent="a", task_id="t3", amount_usd=0.1)
    lost.close()
    led.close()


def test_a_reconcile_counts_the_counters_again(tmp_path) -> None:
    """A counter that drifted from its rows is counted again at the next reconcile."""
    clock = FakeClock()
    led = SpendLedger(f"sqlite:///{tmp_path}/l.db", clock=clock)
    day = Budget(day_usd=1.0, wait_s=0)
    led.reserve_sync(day, agent="a", task_id="t1", amount_usd=0.6)
    led._conn.execute("UPDATE guard_held SET held_usd = 0")  # its counter lost it
    clock.advance(SpendLedger.RECONCILE_S)
    with pytest.raises(BudgetExceeded):
        led.reserve_sync(day, agent="a", task_id="t2", amount_usd=0.6)
    assert_counters_match_rows(led)
    led.close()


def test_a_version_1_ledger_is_migrated_with_its_live_reservations_counted(tmp_path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the guard's tables as release v1 left them
        for statement in _V1:
            db.execute(statement)
        db.execute("CREATE TABLE stalwart_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO stalwart_meta VALUES (?, '1')", (COMPONENT.key,))
        now = FakeClock().time()
        today = time.strftime("%Y-%m-%d", time.gmtime(now))
        db.executemany(
            "INSERT INTO guard_reservations VALUES (?, 'day', '*', ?, ?, ?)",
            [(f"r{n}:day", today, 0.2, now) for n in range(4)],
        )
    led = SpendLedger(f"sqlite:///{path}", clock=FakeClock())
    day = Budget(day_usd=1.0, wait_s=0)
    with pytest.raises(BudgetExceeded):  # 0.8 held by the calls in flight before
        led.reserve_sync(day, agent="a", task_id="t", amount_usd=0.3)
    assert led.reserve_sync(day, agent="a", task_id="t", amount_usd=0.2) is not None
    assert_counters_match_rows(led)
    led.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM stalwart_meta WHERE key = ?", (COMPONENT.key,)
                          ).fetchone() == (str(COMPONENT.version),)  # fmt: skip


def test_a_reservation_written_by_an_older_release_is_counted_at_once(tmp_path) -> None:
    """During an upgrade, a ledger of the release before writes reservation rows as it
    did (no ``live`` column named): the database counts them in guard_held itself."""
    led = SpendLedger(f"sqlite:///{tmp_path}/l.db", clock=FakeClock())
    day = Budget(day_usd=1.0, wait_s=0)
    led.reserve_sync(day, agent="a", task_id="t0", amount_usd=0.1)  # tables at v2
    period = led.period()
    with sqlite3.connect(tmp_path / "l.db") as db:  # v1's INSERT
        db.execute(
            "INSERT INTO guard_reservations VALUES (?, 'day', '*', ?, 0.6, ?)",
            ("old|r1:day", period, FakeClock().time()),
        )
    with pytest.raises(BudgetExceeded):
        led.reserve_sync(day, agent="a", task_id="t1", amount_usd=0.4)
    with sqlite3.connect(tmp_path / "l.db") as db:  # and v1's settle
        db.execute("DELETE FROM guard_reservations WHERE substr(id, 1, 4) = 'old|'")
    assert led.reserve_sync(day, agent="a", task_id="t1", amount_usd=0.4) is not None
    assert_counters_match_rows(led)
    led.close()


def test_a_salvaged_ledger_counts_the_reservations_it_kept(tmp_path) -> None:
    """`stalwart store recover` copies guard_reservations (not guard_held, which is
    derived): the new file's triggers count the copied rows as they arrive."""
    from stalwart.durable._salvage import recover_sqlite

    source = tmp_path / "old.db"
    led = SpendLedger(f"sqlite:///{source}", clock=FakeClock())
    day = Budget(day_usd=1.0, wait_s=0)
    for n in range(3):
        led.reserve_sync(day, agent="a", task_id=f"t{n}", amount_usd=0.25)
    led.close()
    report = recover_sqlite(source, tmp_path / "new.db", [COMPONENT])
    assert report.complete, report
    copy = SpendLedger(f"sqlite:///{tmp_path}/new.db", clock=FakeClock())
    assert_counters_match_rows(copy)
    with pytest.raises(BudgetExceeded):  # 0.75 held by the three calls
        copy.reserve_sync(day, agent="a", task_id="t9", amount_usd=0.3)
    copy.close()
