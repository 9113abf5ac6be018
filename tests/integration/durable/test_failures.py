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


async def test_a_write_that_failed_stops_the_run_even_when_the_code_caught_it(
    make_store: MakeStore, clock: FakeClock
) -> None:
    """The step's record cannot be written (another runner took the task over while it
    ran). The task's code catches the error and goes on, as a framework turning a tool's
    exception into a message for the model does: its next call raises the same error at
    once, without running, and the task does not finish on the record it never wrote."""
    from stalwart.errors import LeaseLost

    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    after: list[str] = []

    async def swallowing(ctx: Context, _: Any) -> Any:
        await ctx.step("first", lambda: 1)

        async def taken_over() -> int:
            assert await store.acquire("thief", 30.0, task_id=ctx.task_id, force=True)
            return 2

        try:
            await ctx.step("second", taken_over)
        except Exception as exc:  # what a framework's tool node does with a tool's error
            after.append(type(exc).__name__)
        try:
            await ctx.step("third", lambda: after.append("third ran"))
        except Exception as exc:
            after.append(type(exc).__name__)
        return "finished anyway"

    tid = await runner.submit("w", None)
    with pytest.raises(LeaseLost):
        await runner.run(tid, swallowing)
    assert after == ["LeaseLost", "LeaseLost"]  # the third step never ran
    task = await store.get_task(tid)
    assert task is not None and task.status == "running"  # the thief's, not finished
    assert [e.name for e in (await store.load_journal(tid)).entries] == ["first"]


async def _given_back(runner: Runner, tid: str, workflow: Any, blocker: sqlite3.Connection) -> None:
    """Run the task until a write fails under ``blocker``'s lock (the runner raises the
    store's error: the task is given back), then let the lock go."""
    try:
        with pytest.raises(StoreUnavailable):
            await runner.run(tid, workflow)
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()


async def test_a_run_whose_write_failed_is_given_back_and_resumes_from_its_journal(
    tmp_path: pathlib.Path, clock: FakeClock
) -> None:
    """A real SQLite lock held by another process makes a step's record fail; the code
    swallows the error and returns. The task is given back (not succeeded with a result
    its journal does not hold); a later run replays the first step and runs the rest."""
    path = tmp_path / "broken.db"
    ran: list[str] = []
    blocker = sqlite3.connect(path, isolation_level=None, timeout=5)

    def locking() -> str:
        ran.append("second")
        if len(ran) == 2:  # the first run: another process takes the write lock
            blocker.execute("BEGIN IMMEDIATE")
        return "two"

    async def workflow(ctx: Context, _: Any) -> Any:
        first = await ctx.step("first", lambda: ran.append("first") or "one")
        try:
            second = await ctx.step("second", locking)
        except StoreError:
            second = "swallowed"
        return [first, second]

    async with SQLiteStore(path, timeout=0.5, clock=clock) as store:
        runner = Runner(store, clock=clock)
        tid = await runner.submit("w", None)
        await _given_back(runner, tid, workflow, blocker)
        task = await store.get_task(tid)
        assert task is not None and not task.finished and task.outcome is None
        clock.advance(60)  # the lease (given back, or left to expire while locked out)
        done = await Runner(store, clock=clock).run(tid, workflow)
    assert done.status == "succeeded" and done.result == ["one", "two"]
    assert ran == ["first", "second", "second"]  # the first step was replayed
    assert (done.replayed_steps, done.executed_steps) == (1, 1)


@pytest.mark.parametrize("code", ["swallows", "raises_again"])
async def test_a_step_around_a_write_that_failed_records_no_outcome(
    tmp_path: pathlib.Path, clock: FakeClock, code: str
) -> None:
    """A step's function makes a journaled call of its own whose write fails (another
    process holds the SQLite write lock), and the lock is gone again before the step's
    own record. Whether the function swallows the store's error or raises it again, the
    step records nothing: neither a result made from the failure nor a ``failed`` entry,
    which would replay as a permanent StepFailed for a passing fault. The task is given
    back, and the next run runs the step whole."""
    path = tmp_path / "nested.db"
    blocker = sqlite3.connect(path, isolation_level=None, timeout=5)
    runs: list[str] = []

    def locking() -> str:
        if not runs:  # the first run: another process takes the write lock
            blocker.execute("BEGIN IMMEDIATE")
        return "inner"

    async def workflow(ctx: Context, _: Any) -> Any:
        async def outer() -> str:
            try:
                return str(await ctx.step("inner", locking))
            except StoreError:
                runs.append("caught")
                blocker.execute("ROLLBACK")  # the store takes writes again
                if code == "raises_again":
                    raise
                return "swallowed"

        return await ctx.step("outer", outer)

    async with SQLiteStore(path, timeout=0.5, clock=clock) as store:
        runner = Runner(store, clock=clock)
        tid = await runner.submit("w", None)
        await _given_back(runner, tid, workflow, blocker)
        assert runs == ["caught"]
        # no outcome of "outer" (the inner record may have landed after its caller gave up
        # on it: nobody knows, and the journal decides)
        journal = (await store.load_journal(tid)).entries
        assert [e for e in journal if e.name == "outer"] == []
        clock.advance(60)  # the lease (given back, or left to expire while locked out)
        done = await Runner(store, clock=clock).run(tid, workflow)
    assert done.status == "succeeded" and done.result == "inner"
