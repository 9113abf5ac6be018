"""Bounded waits for state that announces nothing: metrics the agents ship with their
heartbeats, log lines the log store writes in batches, the alert evaluator's results."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

__all__ = ["until"]


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
