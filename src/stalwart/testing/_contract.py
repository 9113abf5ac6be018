"""The storage contract: one suite every Store backend must pass.

The SQLite, PostgreSQL and in-memory stores pass it; a third backend proves itself
the same way (LangGraph's checkpoint conformance kit is the model). Subclass
:class:`StoreContract` in a test module named ``test_*.py`` (the subclass named
``Test*``) and provide two pytest fixtures, on the class or in a ``conftest.py``:

- ``clock``: a :class:`~stalwart.testing.FakeClock` the store uses;
- ``make_store``: an async factory; ``await make_store(**kwargs)`` returns the store
  *opened*, built with ``clock=clock`` (and the kwargs); called again in the same
  test it opens the SAME database again (the suite closes and reopens), and the
  fixture closes what it opened at the end.

Parametrize the fixtures to run the suite against several backends. Requires pytest
and pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.durable import SCHEMA_VERSION, Joined, JournalEntry, Store
from stalwart.errors import ConfigError, InvalidMessage, LeaseLost, StoreError
from stalwart.testing._clock import FakeClock

__all__ = ["MakeStore", "StoreContract"]

MakeStore = Callable[..., Any]


class StoreContract:
    """The contract's tests (see the module doc); subclass it as ``Test...``."""

    async def test_schema_version_and_reopen_keeps_data(self, make_store: MakeStore) -> None:
        store: Store = await make_store()
        assert await store.schema_version() == SCHEMA_VERSION
        task = await store.create_task("echo", {"x": [1, 2.5, "three", None, True]})
        await store.close()
        store = await make_store()
        again = await store.get_task(task.id)
        assert again is not None
        assert again.input == {"x": [1, 2.5, "three", None, True]}
        assert again.status == "pending" and again.attempts == 0

    async def test_create_and_get(self, make_store: MakeStore) -> None:
        store: Store = await make_store()
        task = await store.create_task("agent-a", {"q": "hi"}, task_id="t-1", seed=7)
        assert (task.id, task.agent, task.status, task.seed) == ("t-1", "agent-a", "pending", 7)
        got = await store.get_task("t-1")
        assert got is not None and got.input == {"q": "hi"} and got.seed == 7
        assert await store.get_task("nope") is None
        with pytest.raises(StoreError, match="already exists"):
            await store.create_task("agent-a", {}, task_id="t-1")
        assert [t.id for t in await store.list_tasks()] == ["t-1"]
        assert await store.list_tasks(status="running") == []

    async def test_bad_input_is_named(self, make_store: MakeStore) -> None:
        store: Store = await make_store()
        with pytest.raises(InvalidMessage, match=r"set at \$\.tags"):
            await store.create_task("a", {"tags": {1, 2}})
        with pytest.raises(InvalidMessage, match="non-finite"):
            await store.create_task("a", [float("nan")])
        with pytest.raises(InvalidMessage, match="non-string dict key"):
            await store.create_task("a", {1: "x"})
        with pytest.raises(InvalidMessage, match="agent"):
            await store.create_task("", {})
        with pytest.raises(ConfigError, match="lease_seconds"):
            await store.acquire("me", 0)

    async def test_acquire_in_creation_order_once(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        store: Store = await make_store()
        first = await store.create_task("a", 1, task_id="first")
        clock.advance(1)
        await store.create_task("a", 2, task_id="second")
        lease = await store.acquire("node-1", 30)
        assert lease is not None and lease.task_id == first.id
        assert lease.token == 1 and lease.task.attempts == 1 and lease.task.status == "running"
        assert lease.expires == pytest.approx(clock.time() + 30)
        lease2 = await store.acquire("node-2", 30)
        assert lease2 is not None and lease2.task_id == "second"
        assert await store.acquire("node-3", 30) is None

    async def test_agents_claim_only_their_own_tasks(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        store: Store = await make_store()
        await store.create_task("triage", 1, task_id="t1")
        clock.advance(1)
        await store.create_task("resolver", 2, task_id="r1")
        clock.advance(1)
        await store.create_task("resolver", 3, task_id="r2")
        got = await store.acquire("n1/resolver", 30, agent="resolver")
        assert got is not None and got.task_id == "r1"
        got = await store.acquire("n2/resolver", 30, agent="resolver")
        assert got is not None and got.task_id == "r2"
        assert await store.acquire("n3/resolver", 30, agent="resolver") is None
        assert [t.id for t in await store.list_tasks(agent="resolver")] == ["r1", "r2"]
        assert [t.id for t in await store.list_tasks(agent="triage", status="pending")] == ["t1"]
        clock.advance(31)  # n1's lease expired: the task is runnable again, for its agent only
        assert await store.acquire("x/triage", 30, agent="triage") is not None
        taken = await store.acquire("n2/resolver", 30, agent="resolver")
        assert taken is not None and taken.task_id == "r1" and taken.token == 2

    async def test_listing_newest_first(self, make_store: MakeStore, clock: FakeClock) -> None:
        store: Store = await make_store()
        for i, agent in enumerate(["a", "b", "a", "a"]):
            await store.create_task(agent, i, task_id=f"t{i}")
            clock.advance(1)
        assert [t.id for t in await store.list_tasks(newest_first=True)] == ["t3", "t2", "t1", "t0"]
        newest = await store.list_tasks(agent="a", newest_first=True, limit=2)
        assert [t.id for t in newest] == ["t3", "t2"]
        assert [
            t.id for t in await store.list_tasks(status="pending", newest_first=True, limit=1)
        ] == ["t3"]
        assert [t.id for t in await store.list_tasks(limit=2)] == ["t0", "t1"]  # oldest first

    async def test_max_running_limits_live_leases_per_agent(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        store: Store = await make_store()
        for i in range(6):
            await store.create_task("resolver", i, task_id=f"r{i}")
        await store.create_task("triage", 0, task_id="t0")
        first = await store.acquire("n1/resolver", 30, agent="resolver", max_running=2)
        second = await store.acquire("n2/resolver", 30, agent="resolver", max_running=2)
        assert first is not None and second is not None
        assert await store.acquire("n3/resolver", 30, agent="resolver", max_running=2) is None
        # The limit is per agent: another agent's work is untouched by it.
        assert await store.acquire("n3/triage", 30, agent="triage", max_running=1) is not None
        await store.finish(first, "succeeded", None)  # a slot frees up
        third = await store.acquire("n3/resolver", 30, agent="resolver", max_running=2)
        assert third is not None and third.task_id == "r2"
        assert await store.acquire("n1/resolver", 30, agent="resolver", max_running=2) is None
        clock.advance(31)  # both live leases expired: they no longer count
        again = [
            await store.acquire("n4/resolver", 30, agent="resolver", max_running=2) for _ in "abc"
        ]
        assert [lease is not None for lease in again] == [True, True, False]
        with pytest.raises(ConfigError, match="max_running"):
            await store.acquire("n1/resolver", 30, agent="resolver", max_running=0)

    async def test_max_running_holds_under_concurrent_claims(self, make_store: MakeStore) -> None:
        # Two handles on one store stand for two nodes (on PostgreSQL, two connection
        # pools racing); however the claims interleave, at most 3 leases are handed out.
        node_a: Store = await make_store()
        node_b: Store = await make_store()
        for i in range(20):
            await node_a.create_task("resolver", i, task_id=f"r{i:02d}")

        async def claim(store: Store, n: int) -> Any:
            return await store.acquire(f"n{n}/resolver", 30, agent="resolver", max_running=3)

        async with asyncio.timeout(30):
            got = await asyncio.gather(*(claim(node_a if n % 2 else node_b, n) for n in range(16)))
        leased = [lease.task_id for lease in got if lease is not None]
        assert len(leased) == 3 and len(set(leased)) == 3
        assert len(await node_a.list_tasks(agent="resolver", status="running")) == 3

    async def test_acquire_many_claims_oldest_first_in_one_transaction(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        store: Store = await make_store()
        for i in range(5):
            await store.create_task("resolver", i, task_id=f"r{i}")
            clock.advance(1)
        await store.create_task("triage", 0, task_id="t0")
        got = await store.acquire_many("n1/resolver", 30, agent="resolver", limit=3)
        assert [lease.task_id for lease in got] == ["r0", "r1", "r2"]
        for lease in got:
            assert (lease.owner, lease.token, lease.task.status) == ("n1/resolver", 1, "running")
            assert lease.task.attempts == 1 and lease.task.input == int(lease.task_id[1:])
            assert lease.expires == pytest.approx(clock.time() + 30)
        # every lease works like one acquire() gave: renewed, finished
        assert (await store.heartbeat(got[0], 30)).token == 1
        await store.finish(got[0], "succeeded", "done")
        rest = await store.acquire_many("n2/resolver", 30, agent="resolver", limit=10)
        assert [lease.task_id for lease in rest] == ["r3", "r4"]
        assert await store.acquire_many("n3/resolver", 30, agent="resolver", limit=10) == []
        pending = await store.list_tasks(agent="triage", status="pending")
        assert [t.id for t in pending] == ["t0"]  # another agent's task is never taken
        clock.advance(31)  # every live lease expired: runnable again, fenced anew
        again = await store.acquire_many("n4/resolver", 30, agent="resolver", limit=10)
        assert [(lease.task_id, lease.token) for lease in again] == [
            ("r1", 2), ("r2", 2), ("r3", 2), ("r4", 2),
        ]  # fmt: skip
        with pytest.raises(LeaseLost):
            await store.heartbeat(rest[0], 30)  # the old owner is fenced out
        with pytest.raises(ConfigError, match="claim limit"):
            await store.acquire_many("n1/resolver", 30, agent="resolver", limit=0)

    async def test_acquire_many_respects_max_running(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        store: Store = await make_store()
        for i in range(8):
            await store.create_task("resolver", i, task_id=f"r{i}")
        one = await store.acquire("n1/resolver", 30, agent="resolver", max_running=5)
        assert one is not None
        got = await store.acquire_many("n2/resolver", 30, agent="resolver", limit=10, max_running=5)
        assert [lease.task_id for lease in got] == ["r1", "r2", "r3", "r4"]
        assert (
            await store.acquire_many("n2/resolver", 30, agent="resolver", limit=10, max_running=5)
            == []
        )
        await store.finish(one, "succeeded", None)
        more = await store.acquire_many(
            "n3/resolver", 30, agent="resolver", limit=10, max_running=5
        )
        assert [lease.task_id for lease in more] == ["r5"]

    async def test_acquire_many_concurrent_claimers_take_disjoint_tasks(
        self, make_store: MakeStore
    ) -> None:
        # Two handles on one store stand for two nodes claiming at once: every task is
        # handed out once, and a cluster-wide max_running holds however they interleave.
        node_a: Store = await make_store()
        node_b: Store = await make_store()
        for i in range(60):
            await node_a.create_task("resolver", i, task_id=f"r{i:02d}")

        async def claim(store: Store, n: int, cap: int | None) -> list[str]:
            got = await store.acquire_many(
                f"n{n}/resolver", 30, agent="resolver", limit=7, max_running=cap
            )
            return [lease.task_id for lease in got]

        async with asyncio.timeout(30):
            taken = await asyncio.gather(
                *(claim(node_a if n % 2 else node_b, n, None) for n in range(6))
            )
        every = [tid for claimed in taken for tid in claimed]
        assert len(every) == 42 and len(set(every)) == 42
        async with asyncio.timeout(30):
            capped = await asyncio.gather(
                *(claim(node_a if n % 2 else node_b, n, 45) for n in range(6))
            )
        assert sum(len(claimed) for claimed in capped) == 3
        assert len(await node_a.list_tasks(agent="resolver", status="running")) == 45

    async def test_only_a_first_lease_may_say_it_is_fresh(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        """``Lease.fresh`` lets a runner skip reading the journal: no lease after another
        (released, expired and taken over, retried after a failure) may claim it, by
        whichever call it was taken. (A store that cannot tell says False throughout.)"""
        store: Store = await make_store()
        for tid in ("t", "u", "v"):
            await store.create_task("a", None, task_id=tid)
        firsts = await store.acquire_many("n1/a", 10, agent="a", limit=3)
        assert [lease.task_id for lease in firsts] == ["t", "u", "v"]
        for lease in firsts:
            await store.append(lease, [JournalEntry(0, "step", "s", lease.task_id)])
        t, _u, v = firsts  # u is left to expire
        await store.release(t)
        await store.finish(v, "failed", "boom")
        assert await store.retry("v")
        clock.advance(11)  # u's lease expires
        again = await store.acquire_many("n2/a", 10, agent="a", limit=3)
        assert sorted(lease.task_id for lease in again) == ["t", "u", "v"]
        assert not any(lease.fresh for lease in again)
        for lease in again:
            assert [e.value for e in (await store.load_journal(lease.task_id)).entries] == [
                lease.task_id
            ]
            await store.release(lease)
        one = await store.acquire("n3/a", 10, task_id="t")
        assert one is not None and not one.fresh

    async def test_expired_lease_moves_and_fences_old_owner(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        store: Store = await make_store()
        await store.create_task("a", None, task_id="t")
        old = await store.acquire("dead-node", 10)
        assert old is not None
        await store.append(old, [JournalEntry(0, "step", "s0", 1)])
        clock.advance(5)
        assert await store.acquire("node-2", 10, task_id="t") is None  # still leased
        clock.advance(6)
        new = await store.acquire("node-2", 10)
        assert new is not None and new.task_id == "t"
        assert new.token == old.token + 1 and new.task.attempts == 2
        with pytest.raises(LeaseLost):
            await store.append(old, [JournalEntry(1, "step", "s1", 2)])
        with pytest.raises(LeaseLost):
            await store.heartbeat(old, 10)
        with pytest.raises(LeaseLost):
            await store.finish(old, "succeeded", 1)
        await store.append(new, [JournalEntry(1, "step", "s1", 3)])
        load = await store.load_journal("t")
        assert [(e.seq, e.value) for e in load.entries] == [(0, 1), (1, 3)]

    async def test_a_task_keeps_its_trace_through_every_claim(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        """The creator's ``traceparent`` is stored with the task: the first claim, a
        takeover after the lease lapsed and a read all see it; without one it is ""."""
        store: Store = await make_store()
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        created = await store.create_task("a", None, task_id="t", trace=parent)
        await store.create_task("a", None, task_id="u")
        await store.create_task("a", None, task_id="v", trace="x" * 129)  # too long: dropped
        assert created.trace == parent
        first = await store.acquire("dead-node", 10, task_id="t")
        assert first is not None and first.task.trace == parent
        clock.advance(11)
        again = await store.acquire("node-2", 10, task_id="t")
        assert again is not None and again.task.attempts == 2 and again.task.trace == parent
        got = {t.id: t.trace for t in await store.list_tasks()}
        assert got == {"t": parent, "u": "", "v": ""}

    async def test_heartbeat_extends_and_force_takes_over(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        store: Store = await make_store()
        await store.create_task("a", None, task_id="t")
        lease = await store.acquire("n1", 10)
        assert lease is not None
        clock.advance(8)
        lease = await store.heartbeat(lease, 10)
        clock.advance(8)
        assert await store.acquire("n2", 10, task_id="t") is None
        forced = await store.acquire("n2", 10, task_id="t", force=True)
        assert forced is not None and forced.token == lease.token + 1
        with pytest.raises(LeaseLost):
            await store.heartbeat(lease, 10)

    async def test_heartbeat_many_renews_each_lease_by_its_own_token(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        store: Store = await make_store()
        for i in range(205):  # more than one statement's chunk
            await store.create_task("a", None, task_id=f"t{i:03}")
        leases = []
        for _ in range(205):
            lease = await store.acquire("n1", 10)
            assert lease is not None
            leases.append(lease)
        clock.advance(8)
        stolen = leases[7]
        taken = await store.acquire("n2", 10, task_id=stolen.task_id, force=True)
        assert taken is not None
        finished = leases[9]
        await store.finish(finished, "succeeded", 1)
        renewed = await store.heartbeat_many(leases, 10)
        assert renewed[stolen.task_id] is None and renewed[finished.task_id] is None
        kept = [lease for lease in leases if lease.task_id not in (stolen.task_id, "t009")]
        for lease in kept:
            new = renewed[lease.task_id]
            assert new is not None and new.token == lease.token
            assert new.expires > lease.expires
        clock.advance(8)  # past the first lease, inside the renewed one
        assert await store.acquire("n2", 10, task_id=kept[0].task_id) is None
        with pytest.raises(LeaseLost):
            await store.heartbeat(stolen, 10)

    async def test_release_and_finish(self, make_store: MakeStore) -> None:
        store: Store = await make_store()
        await store.create_task("a", None, task_id="t")
        lease = await store.acquire("n1", 10)
        assert lease is not None
        await store.release(lease)
        task = await store.get_task("t")
        assert task is not None and task.status == "pending" and task.lease_owner is None
        lease = await store.acquire("n1", 10)
        assert lease is not None
        await store.finish(lease, "succeeded", {"answer": 42})
        task = await store.get_task("t")
        assert task is not None and task.status == "succeeded" and task.outcome == {"answer": 42}
        assert task.finished and task.finished_at is not None
        assert await store.acquire("n1", 10) is None
        assert await store.acquire("n1", 10, task_id="t", force=True) is None
        with pytest.raises(StoreError, match="status"):
            await store.finish(lease, "running", None)

    async def test_journal_roundtrip_and_duplicates(self, make_store: MakeStore) -> None:
        store: Store = await make_store()
        await store.create_task("a", None, task_id="t")
        lease = await store.acquire("n1", 10)
        assert lease is not None
        values: list[Any] = [None, 0, -(2**62), 1.5e300, "é✓", [1, [2, {"k": "v"}]], {"": ""}]
        await store.append(
            lease, [JournalEntry(i, "step", f"s{i}", v) for i, v in enumerate(values)]
        )
        load = await store.load_journal("t")
        assert [e.value for e in load.entries] == values and load.quarantined == []
        with pytest.raises(StoreError, match="already has a record #2"):
            await store.append(lease, [JournalEntry(2, "step", "s2", 0)])
        # the same record again is the append done (a retry whose first answer was lost)
        await store.append(lease, [JournalEntry(2, "step", "s2", values[2])])
        assert [e.value for e in (await store.load_journal("t")).entries] == values
        assert (await store.load_journal("other")).entries == []

    async def test_a_sync_after_lazy_appends_keeps_them_and_changes_nothing(
        self, make_store: MakeStore
    ) -> None:
        store: Store = await make_store()
        await store.sync()  # nothing written yet: still fine
        await store.create_task("a", None, task_id="t")
        lease = await store.acquire("n1", 10)
        assert lease is not None
        await store.append(lease, [JournalEntry(0, "step", "s0", 1)], lazy=True)
        await store.append(lease, [JournalEntry(1, "step", "s1", 2)], lazy=True)
        await store.sync()
        assert [e.value for e in (await store.load_journal("t")).entries] == [1, 2]
        await store.append(lease, [JournalEntry(2, "step", "s2", 3)])  # the lease still holds

    async def test_effect_ledger(self, make_store: MakeStore, clock: FakeClock) -> None:
        store: Store = await make_store()
        await store.create_task("a", None, task_id="t")
        lease = await store.acquire("n1", 10)
        assert lease is not None
        await store.effect_started(lease, "t:0", 0, "pay")
        await store.effect_started(lease, "t:0", 0, "pay")  # idempotent
        effects = await store.load_effects("t")
        assert effects[0].status == "started" and effects[0].key == "t:0"
        entry = JournalEntry(0, "effect", "pay", {"status": "completed", "result": {"ok": True}})
        await store.effect_finished(lease, "t:0", "completed", {"ok": True}, entry)
        effects = await store.load_effects("t")
        assert effects[0].status == "completed" and effects[0].result == {"ok": True}
        assert [e.value for e in (await store.load_journal("t")).entries] == [entry.value]
        clock.advance(11)
        newer = await store.acquire("n2", 10)
        assert newer is not None
        with pytest.raises(LeaseLost):
            await store.effect_started(lease, "t:1", 1, "mail")
        assert 1 not in await store.load_effects("t")

    async def test_load_reads_journal_and_ledger_at_once(self, make_store: MakeStore) -> None:
        store: Store = await make_store()
        await store.create_task("a", None, task_id="t")
        lease = await store.acquire("n1", 10)
        assert lease is not None
        await store.append(lease, [JournalEntry(0, "step", "s", {"v": 1})])
        await store.effect_started(lease, "t:1", 1, "pay")
        journal, effects = await store.load("t")
        assert journal == await store.load_journal("t")
        assert effects == await store.load_effects("t") and effects[1].status == "started"
        empty, none = await store.load("missing")
        assert empty.entries == [] and none == {}

    async def test_a_joined_write_commits_with_its_entry_or_neither_does(
        self, make_store: MakeStore
    ) -> None:
        store: Store = await make_store()
        if not store.joins(store.url):
            return  # this backend takes no joined writes (the caller writes on its own)
        await store.create_task("a", None, task_id="t")
        lease = await store.acquire("n1", 10)
        assert lease is not None
        touch = "UPDATE stalwart_tasks SET updated_at = ? WHERE id = ?"

        def fails(at: float) -> Any:
            yield (touch, (at, "t"))
            raise ValueError("the joined write failed")

        def works(at: float) -> Any:
            yield (touch, (at, "t"))
            return "done"

        with pytest.raises(ValueError, match="joined write failed"):
            await store.append(lease, [JournalEntry(0, "step", "s", 1)], also=Joined(fails, (1.0,)))
        assert (await store.load_journal("t")).entries == []  # the entry rolled back with it
        task = await store.get_task("t")
        assert task is not None and task.updated_at != 1.0
        also = Joined(works, (2.0,))
        assert await store.append(lease, [JournalEntry(0, "step", "s", 1)], also=also) == "done"
        assert [e.value for e in (await store.load_journal("t")).entries] == [1]
        task = await store.get_task("t")
        assert task is not None and task.updated_at == 2.0

    async def test_retention_compact_and_delete(
        self, make_store: MakeStore, clock: FakeClock
    ) -> None:
        store: Store = await make_store()
        for tid in ("old", "new", "running"):
            await store.create_task("a", tid, task_id=tid)
        for tid in ("old", "new", "running"):
            lease = await store.acquire("n", 100, task_id=tid)
            assert lease is not None
            await store.append(lease, [JournalEntry(0, "step", "s", 1)])
            if tid != "running":
                await store.finish(lease, "succeeded", tid)
            if tid == "old":
                clock.advance(3600)
        cutoff = clock.time() - 1800
        assert await store.purge_finished(cutoff, "compact") == 1
        assert (await store.load_journal("old")).entries == []
        old = await store.get_task("old")
        assert old is not None and old.outcome == "old"  # compact keeps the result
        assert len((await store.load_journal("new")).entries) == 1
        assert await store.purge_finished(cutoff, "compact") == 0
        assert await store.purge_finished(clock.time() + 1, "delete") == 2
        assert await store.get_task("old") is None and await store.get_task("new") is None
        assert len((await store.load_journal("running")).entries) == 1

    async def test_many_concurrent_writers(self, make_store: MakeStore) -> None:
        store: Store = await make_store()
        leases = []
        for i in range(32):
            await store.create_task("a", i, task_id=f"t{i:02d}")
        for _ in range(32):
            lease = await store.acquire("n", 60)
            assert lease is not None
            leases.append(lease)

        async def writer(lease: Any) -> None:
            for seq in range(20):
                await store.append(lease, [JournalEntry(seq, "step", "s", [lease.task_id, seq])])

        async with asyncio.timeout(60):
            await asyncio.gather(*(writer(lease) for lease in leases))
        for lease in leases:
            load = await store.load_journal(lease.task_id)
            assert [e.value for e in load.entries] == [[lease.task_id, s] for s in range(20)]

    async def test_node_registry(self, make_store: MakeStore, clock: FakeClock) -> None:
        store: Store = await make_store()
        await store.register_node("n1", {"address": "10.0.0.1:8470", "version": "0.1.0"})
        clock.advance(5)
        await store.register_node("n2", {"address": "10.0.0.2:8470"})
        clock.advance(5)
        await store.node_heartbeat("n1")
        nodes = {n.id: n for n in await store.list_nodes()}
        assert set(nodes) == {"n1", "n2"}
        assert nodes["n1"].info["address"] == "10.0.0.1:8470"
        assert nodes["n1"].heartbeat_at - nodes["n1"].started_at == pytest.approx(10)
        assert nodes["n2"].heartbeat_at == nodes["n2"].started_at
        await store.unregister_node("n2")
        assert [n.id for n in await store.list_nodes()] == ["n1"]

    async def test_probe_accepts_a_write_within_its_deadline(self, make_store: MakeStore) -> None:
        store: Store = await make_store()
        await store.probe(5.0)  # an open, healthy store accepts a write
        await store.create_task("a", 1, task_id="after-probe")
        assert [t.id for t in await store.list_tasks()] == ["after-probe"]
