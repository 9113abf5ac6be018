"""Time, injected.

Every timer-driven policy in stalwart (backoff, circuit breakers, restart
intensity, leases, budgets per day) takes a :class:`Clock` instead of calling
:mod:`time` directly, so tests drive time with
:class:`stalwart.testing.FakeClock` and never sleep.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "SYSTEM_CLOCK"]


@runtime_checkable
class Clock(Protocol):
    """A source of time.

    ``monotonic()`` measures intervals (never goes back); ``time()`` is wall
    time in seconds since the epoch (for timestamps people read);
    ``sleep()`` waits on this clock's notion of time.
    """

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.time`, :func:`asyncio.sleep`."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
