"""Waiting on the events a runtime emits (supervisor reports, node events)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from stalwart.observe import Event, EventBus

__all__ = ["EventWaiter", "eventually"]


class EventWaiter:
    """Collects an :class:`~stalwart.observe.EventBus`'s events as they are emitted.

    ``wait`` returns the ``count``-th event named ``name`` (with these ``fields``, and
    passing ``where``) as soon as it has been emitted, or raises TimeoutError after
    ``timeout`` seconds: tests synchronize on what happened, never on a sleep.
    """

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


async def eventually(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Return as soon as ``condition()`` holds (checked every 10 ms); TimeoutError after
    ``timeout`` s. For state that announces nothing: a node's log lines in another
    process, metrics the agents ship with their heartbeats."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - nothing to subscribe to: poll, bounded
            await asyncio.sleep(0.01)
