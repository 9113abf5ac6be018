"""Bounded waits for state that announces nothing: metrics the agents ship with their
heartbeats, log lines the log store writes in batches, the alert evaluator's results."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["scheduling_lag", "until"]


async def until(
    predicate: Callable[[], bool | Awaitable[bool]], *, timeout: float, every: float = 0.1
) -> bool:
    """Check ``predicate`` every ``every`` seconds until it holds (True) or ``timeout``
    seconds have passed (False: the caller reports what it waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if time.monotonic() >= deadline:
            return False
        # nothing to subscribe to: poll, bounded by the deadline
        await asyncio.sleep(min(every, max(0.0, deadline - time.monotonic())))


_LAG_TICK_S = 0.02


@contextlib.asynccontextmanager
async def scheduling_lag() -> AsyncIterator[list[float]]:
    """While the block runs, the most a short sleep of this process overran (seconds, in
    the one-item list yielded; updated as it runs). On a machine whose cores are busy every
    process waits for one, the agent retrying a call as much as this one: a retry's wait
    may then overrun its bound by that much, and is judged against it (an idle machine
    measures ~1 ms; with two CPU hogs beside the suite, a wait overran its bound by 0.2 s)."""
    worst = [0.0]

    async def tick() -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(_LAG_TICK_S)
            worst[0] = max(worst[0], time.monotonic() - asked - _LAG_TICK_S)

    async with asyncio.TaskGroup() as tg:
        ticker = tg.create_task(tick())
        try:
            yield worst
        finally:
            ticker.cancel()
