"""The storage contract kit (:mod:`stalwart.testing`), run against every backend.

``make_store`` and ``clock`` come from ``conftest.py``, parametrized over SQLite,
PostgreSQL and the in-memory store.
"""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.durable import Joined, JournalEntry, Store
from stalwart.testing import StoreContract

HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid = pg_backend_pid() AND objid::bigint = ?"
)


class TestStoreContract(StoreContract):
    """Every test of the kit, on every backend of ``conftest.BACKENDS``."""

    async def test_first_leases_of_a_claim_of_many_are_fresh(self, make_store: Any) -> None:
        """Beyond the kit: these stores know a task's first lease (its token is 1), by a
        claim of one or of many, so its runner reads no journal (the agents claim many)."""
        store: Store = await make_store()
        for tid in ("t", "u"):
            await store.create_task("a", None, task_id=tid)
        one = await store.acquire("n1/a", 10, task_id="t")
        many = await store.acquire_many("n1/a", 10, agent="a", limit=5)
        assert one is not None and one.fresh
        assert [(lease.task_id, lease.fresh) for lease in many] == [("u", True)]

    async def test_a_joined_write_on_postgres_commits_synchronously(
        self, make_store: Any, backend: str
    ) -> None:
        """A lazy append carrying another component's write commits with
        ``synchronous_commit`` on where the database may lose an asynchronous commit while
        the writer lives on (Store.joins_lazily); its lock is held in the transaction."""
        if backend != "postgres":
            pytest.skip("a PostgreSQL server's asynchronous commit only")
        store: Store = await make_store()
        assert store.joins(store.url) and not store.joins_lazily()
        await store.create_task("a", None, task_id="t")
        lease = await store.acquire("n1", 10)
        assert lease is not None

        def seen() -> Any:
            sync = (yield ("SHOW synchronous_commit", ())).rows[0][0]
            held = (yield (HELD, (4242,))).rows[0][0]
            return sync, int(held)

        also = Joined(seen, (), lock=4242)
        got = await store.append(lease, [JournalEntry(0, "step", "s", 1)], also=also, lazy=True)
        assert got == ("on", 1)
        alone = Joined(seen, ())
        got = await store.append(lease, [JournalEntry(1, "step", "s", 2)], also=alone)
        assert got == ("on", 0)

    async def test_claims_and_renewals_are_lazy_commits_on_sqlite_only(
        self, make_store: Any, backend: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A claim or a lease renewal that an OS crash loses leaves the task as it was, its
        holder gone with it: on SQLite (only an OS crash loses a lazy commit, and every
        process with it) they commit without an fsync of their own. A PostgreSQL server can
        lose an asynchronous commit while the claimer lives on, and hand the same lease
        token out twice: there they are ordinary commits."""
        if backend == "memory":
            pytest.skip("a database's commits only")
        store: Any = await make_store()
        for tid in ("t", "u"):
            await store.create_task("a", None, task_id=tid)
        written: list[bool] = []
        write = store.database.write

        async def seen(*args: Any, **kwargs: Any) -> Any:
            written.append(bool(kwargs.get("lazy", False)))
            return await write(*args, **kwargs)

        monkeypatch.setattr(store.database, "write", seen)
        one = await store.acquire("n1/a", 10, task_id="t")
        many = await store.acquire_many("n1/a", 10, agent="a", limit=5)
        assert one is not None and len(many) == 1
        await store.heartbeat(one, 10)
        await store.heartbeat_many([one, *many], 10)
        assert written == [backend == "sqlite"] * 4
        await store.finish(one, "succeeded", None)  # a result: always an ordinary commit
        assert written[-1] is False
