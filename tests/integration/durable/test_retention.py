"""Retention with a FakeClock: finished journals go after the configured time, nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.durable import Context, Retention, Runner, Store
from stalwart.errors import ConfigError
from stalwart.testing import FakeClock

MakeStore = Callable[..., Any]


async def _steps(ctx: Context, n: Any) -> Any:
    for i in range(n):
        await ctx.step("s", lambda i=i: i)
    return n


async def test_retention_compacts_after_the_configured_time(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    done = await runner.run(await runner.submit("w", 5), _steps)
    pending = await runner.submit("w", 3)
    retention = Retention(store, after_seconds=3600, clock=clock)
    assert await retention.run_once() == 0
    clock.advance(3599)
    assert await retention.run_once() == 0
    clock.advance(2)
    assert await retention.run_once() == 1
    assert (await store.load_journal(done.task_id)).entries == []
    kept = await store.get_task(done.task_id)
    assert kept is not None and kept.outcome == 5
    assert (await runner.run(pending, _steps)).result == 3  # untouched, still runnable


async def test_retention_delete_mode_and_periodic_loop(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    done = await runner.run(await runner.submit("w", 2), _steps)
    retention = Retention(store, after_seconds=60, mode="delete", interval=30, clock=clock)
    loop = asyncio.ensure_future(retention.run_forever())
    try:
        async with asyncio.timeout(10):
            while clock.pending_sleepers < 1:
                await asyncio.sleep(0.001)
            for _ in range(3):
                clock.advance(30)
                while clock.pending_sleepers < 1:
                    await asyncio.sleep(0.001)
        assert await store.get_task(done.task_id) is None
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop


def test_retention_settings_are_checked() -> None:
    from stalwart.testing import MemoryStore

    with pytest.raises(ConfigError, match="mode"):
        Retention(MemoryStore(), mode="shred")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="after_seconds"):
        Retention(MemoryStore(), after_seconds=-1)
