from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from stalwart.config import RuntimeSettings
from stalwart.observe import Event, EventBus
from stalwart.runtime import ChildSpec, Runtime, SupervisorSpec
from stalwart.testing import ProbeAgent

FAST = RuntimeSettings(heartbeat_interval=0.2, start_timeout=10.0)


class EventWaiter:
    """Collects a runtime's events; ``wait`` returns the next matching one within a deadline."""

    def __init__(self, bus: EventBus) -> None:
        self.seen: list[Event] = []
        self._cond = asyncio.Condition()
        bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        self.seen.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    def matching(self, name: str, **fields: Any) -> list[Event]:
        return [
            e
            for e in self.seen
            if e.name == name and all(e.fields.get(k) == v for k, v in fields.items())
        ]

    async def wait(
        self,
        name: str,
        *,
        timeout: float = 10.0,
        where: Callable[[Event], bool] | None = None,
        count: int = 1,
        **fields: Any,
    ) -> Event:
        def found() -> list[Event]:
            return [e for e in self.matching(name, **fields) if where is None or where(e)]

        async with asyncio.timeout(timeout), self._cond:
            await self._cond.wait_for(lambda: len(found()) >= count)
        return found()[count - 1]


def probes(n: int, **kw: Any) -> list[ChildSpec]:
    return [ChildSpec(f"p{i}", ProbeAgent, **kw) for i in range(n)]


@pytest.fixture
async def make_runtime() -> AsyncIterator[Callable[..., Any]]:
    """Start runtimes for a test; every one is stopped (and its processes reaped) after it."""
    started: list[Runtime] = []

    async def make(
        root: SupervisorSpec, settings: RuntimeSettings = FAST
    ) -> tuple[Runtime, EventWaiter]:
        bus = EventBus(log=False)
        waiter = EventWaiter(bus)
        rt = Runtime(root, settings, events=bus)
        await rt.start()
        started.append(rt)
        return rt, waiter

    yield make
    for rt in reversed(started):
        await rt.stop()
