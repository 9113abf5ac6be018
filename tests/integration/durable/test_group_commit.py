"""Group commit: steps of many tasks share commits, and no step returns before it is durable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.durable import Context, Runner, Store
from stalwart.durable._metrics import COMMIT_BATCH
from stalwart.testing import FakeClock

from ._damage import _sql

MakeStore = Callable[..., Any]


def _batch_stats() -> tuple[float, float]:
    count = total = 0.0
    for metric in COMMIT_BATCH.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    return count, total


async def test_concurrent_tasks_share_commits(make_store: MakeStore, backend: str) -> None:
    if backend == "memory":
        pytest.skip("the memory store has nothing to commit")
    store: Store = await make_store(clock=FakeClock())
    runner = Runner(store)

    async def wf(ctx: Context, n: Any) -> Any:
        for i in range(n):
            await ctx.step("s", lambda i=i: i)
        return n

    ids = [await runner.submit("w", 30) for _ in range(64)]
    count0, sum0 = _batch_stats()
    async with asyncio.timeout(60):
        results = await asyncio.gather(*(runner.run(tid, wf) for tid in ids))
    assert all(r.result == 30 for r in results)
    count1, sum1 = _batch_stats()
    commits, operations = count1 - count0, sum1 - sum0
    assert operations >= 64 * 30
    assert operations / commits > 2, f"{operations} operations in {commits} commits"


async def test_a_step_returns_only_when_durable(make_store: MakeStore, backend: str) -> None:
    if backend == "memory":
        pytest.skip("nothing outside the process can look into the memory store")
    store: Store = await make_store()
    runner = Runner(store)
    seen: list[int] = []

    async def wf(ctx: Context, n: Any) -> Any:
        for i in range(n):
            await ctx.step("s", lambda i=i: i)
            # A separate connection (another process would do the same) sees the record.
            rows = _sql(store, "SELECT count(*) FROM stalwart_journal WHERE task_id = ?",
                        (ctx.task_id,))  # fmt: skip
            seen.append(int(rows[0][0]))
        return n

    await runner.run(await runner.submit("w", 10), wf)
    assert seen == list(range(1, 11))


async def test_two_nodes_never_share_a_task(make_store: MakeStore) -> None:
    node_a: Store = await make_store()
    node_b: Store = await make_store()
    for i in range(40):
        await node_a.create_task("w", i, task_id=f"t{i:02d}")
    taken: dict[str, list[str]] = {"a": [], "b": []}

    async def worker(name: str, store: Store) -> None:
        while (lease := await store.acquire(name, 60)) is not None:
            taken[name].append(lease.task_id)
            await asyncio.sleep(0)

    async with asyncio.timeout(60):
        await asyncio.gather(worker("a", node_a), worker("b", node_b))
    both = taken["a"] + taken["b"]
    assert sorted(both) == [f"t{i:02d}" for i in range(40)]  # each exactly once


async def test_a_read_does_not_wait_for_another_process_holding_the_write_lock(
    tmp_path: Any,
) -> None:
    """SQLite: a batch of reads takes no write lock, so another connection's open write
    transaction (another process's commit, a long one) does not hold it up; a write
    still waits for it."""
    import sqlite3

    from stalwart.durable import SQLiteStore
    from stalwart.errors import StoreUnavailable

    path = tmp_path / "s.db"
    store = SQLiteStore(str(path), timeout=0.5)
    await store.open()
    try:
        task = await store.create_task("w", {"n": 1})
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the file's write lock
        try:
            async with asyncio.timeout(0.4):  # under the busy timeout: it did not wait
                found = await store.get_task(task.id)
                running = await store.list_tasks(status="pending")
            assert found is not None and found.id == task.id
            assert [t.id for t in running] == [task.id]
            with pytest.raises(StoreUnavailable):  # a write waits, then fails
                await store.create_task("w", {"n": 2})
        finally:
            other.execute("ROLLBACK")
            other.close()
    finally:
        await store.close()
