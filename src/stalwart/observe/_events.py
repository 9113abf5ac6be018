from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from stalwart.observe._levels import event_level
from stalwart.observe._logging import get_logger

__all__ = ["Event", "EventBus", "Subscription"]

_log = get_logger("stalwart.events")


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One structured event: a name (``agent_exited``…), a wall timestamp, and fields."""

    name: str
    ts: float
    fields: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


Subscriber = Callable[[Event], None]


class Subscription:
    """Handle returned by :meth:`EventBus.subscribe`; ``close()`` stops delivery."""

    __slots__ = ("_bus", "_fn")

    def __init__(self, bus: EventBus, fn: Subscriber) -> None:
        self._bus, self._fn = bus, fn

    def close(self) -> None:
        self._bus._subscribers.discard(self._fn)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Synchronous fan-out of events to subscribers, each event also logged (at the
    level :func:`~stalwart.observe.event_level` gives it: ``agent_exited`` of a killed
    agent at ``warning``, ``supervisor_gave_up`` at ``error``).

    Subscribers run inline and must be quick; one that raises is logged and
    kept (a broken dashboard must not stop supervision). The last ``keep``
    events are retained for inspection (``recent``).
    """

    def __init__(self, *, keep: int = 1000, log: bool = True) -> None:
        self._subscribers: set[Subscriber] = set()
        self._recent: collections.deque[Event] = collections.deque(maxlen=keep)
        self._log = log

    def subscribe(self, fn: Subscriber) -> Subscription:
        self._subscribers.add(fn)
        return Subscription(self, fn)

    def notify(self, name: str, **fields: Any) -> Event:
        """Deliver an event to the subscribers only: not logged, not kept in ``recent``.

        For high-rate events that only a live listener wants (a task's streamed model
        text, ``task.delta``): logging each would flood the log store, and keeping them
        would push every other event out of ``recent``."""
        event = Event(name=name, ts=time.time(), fields=fields)
        for fn in tuple(self._subscribers):
            try:
                fn(event)
            except Exception:
                _log.exception("event_subscriber_failed", event_name=name)
        return event

    def emit(self, name: str, **fields: Any) -> Event:
        event = Event(name=name, ts=time.time(), fields=fields)
        self._recent.append(event)
        if self._log:
            getattr(_log, event_level(name, fields))(name, **fields)
        for fn in tuple(self._subscribers):
            try:
                fn(event)
            except Exception:
                _log.exception("event_subscriber_failed", event_name=name)
        return event

    def recent(self, name: str | None = None) -> list[Event]:
        """Retained events, oldest first, optionally only those named ``name``."""
        return [e for e in self._recent if name is None or e.name == name]
