"""Degradation, made visible: every fallback or unavailable tool is logged, counted and timed.

A component (``model:default``, ``tool:send_email``) enters degradation with
:meth:`Degradations.begin` (a fallback model answered, a tool's breaker opened)
and leaves it with :meth:`Degradations.end`. Each transition is one log line or
event (``degradation_started`` / ``degradation_ended`` with ``duration_s``), the
``stalwart_degraded{component}`` gauge is 1 meanwhile (the
``ProlongedDegradation`` alert reads it), ``stalwart_degradation_events_total``
counts entries by kind and ``stalwart_degradation_seconds_total`` accumulates
the time spent degraded. Time comes from the injected clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.observe._catalog import DEGRADATION_EVENTS, DEGRADATION_SECONDS, DEGRADED
from stalwart.observe._events import EventBus
from stalwart.observe._logging import get_logger

__all__ = ["Degradations"]

_log = get_logger("stalwart.degradation")


@dataclasses.dataclass(frozen=True, slots=True)
class _Active:
    kind: str
    since: float


class Degradations:
    """The components running degraded in this process (see the module docstring)."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, events: EventBus | None = None) -> None:
        self.clock = clock
        self.events = events
        self._active: dict[str, _Active] = {}

    def _emit(self, name: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.emit(name, **fields)
        else:
            _log.warning(name, **fields)

    def begin(self, component: str, kind: str, **fields: Any) -> bool:
        """Mark ``component`` degraded (``kind``: fallback, tool_unavailable…); False if it was."""
        if component in self._active:
            return False
        self._active[component] = _Active(kind, self.clock.monotonic())
        DEGRADED.labels(component).set(1)
        DEGRADATION_EVENTS.labels(component, kind).inc()
        self._emit("degradation_started", component=component, kind=kind, **fields)
        return True

    def end(self, component: str, **fields: Any) -> float | None:
        """Mark ``component`` healthy; returns how long it was degraded (None if it was not)."""
        active = self._active.pop(component, None)
        if active is None:
            return None
        duration = max(0.0, self.clock.monotonic() - active.since)
        DEGRADED.labels(component).set(0)
        DEGRADATION_SECONDS.labels(component).inc(duration)
        self._emit(
            "degradation_ended",
            component=component,
            kind=active.kind,
            duration_s=round(duration, 3),
            **fields,
        )
        return duration

    @contextlib.contextmanager
    def degraded(self, component: str, kind: str, **fields: Any) -> Iterator[None]:
        """Degraded for the duration of the block (a fallback call, say)."""
        began = self.begin(component, kind, **fields)
        try:
            yield
        finally:
            if began:
                self.end(component)

    def active(self) -> dict[str, dict[str, Any]]:
        """Each degraded component: its kind and seconds so far."""
        now = self.clock.monotonic()
        return {c: {"kind": a.kind, "seconds": now - a.since} for c, a in self._active.items()}
