"""The store's own failures: deadlines hold, unreachable stores say so, unknown agents too."""

from __future__ import annotations

import asyncio
import pathlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.durable import Context, PostgresStore, Runner, SQLiteStore, Store
from stalwart.errors import StoreError, StoreUnavailable
from stalwart.testing import FakeClock

MakeStore = Callable[..., Any]


async def test_locked_sqlite_store_fails_within_its_deadline(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "busy.db"
    async with SQLiteStore(path, timeout=0.5) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"locked|did not answer"):
                await store.create_task("a", None)
            assert time.monotonic() - started < 5
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # Once the lock is gone the store works again: nothing was wedged.
        assert (await store.create_task("a", 1)).input == 1


async def test_unreachable_postgres_is_unavailable() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:9/nowhere", timeout=1)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await store.open()
    assert time.monotonic() - started < 10


async def test_run_next_picks_the_oldest_and_names_unknown_agents(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)

    async def echo(ctx: Context, value: Any) -> Any:
        return await ctx.step("echo", lambda: value)

    await runner.submit("echo", 1)
    clock.advance(1)
    await runner.submit("mystery", 2)
    first = await runner.run_next({"echo": echo})
    assert first is not None and first.result == 1
    with pytest.raises(StoreError, match="'mystery'"):
        await runner.run_next({"echo": echo})
    pending = await store.list_tasks(status="pending")
    assert [t.agent for t in pending] == ["mystery"]  # released untouched
    assert await Runner(store, clock=clock).run_next({"mystery": echo}) is not None
    assert await runner.run_next({"echo": echo}) is None


async def test_cancelled_runner_hands_the_task_back(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    gate = asyncio.Event()

    async def wf(ctx: Context, _: Any) -> Any:
        await ctx.step("first", lambda: 1)
        await gate.wait()
        return 2

    tid = await runner.submit("w", None)
    run = asyncio.ensure_future(runner.run(tid, wf))
    async with asyncio.timeout(10):
        while (await store.load_journal(tid)).entries == []:
            await asyncio.sleep(0.001)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    task = await store.get_task(tid)
    assert task is not None and task.status == "pending"
    gate.set()
    assert (await runner.run(tid, wf)).result == 2
