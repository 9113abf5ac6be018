"""Retention: finished tasks' journals do not stay forever.

``mode="compact"`` (default) deletes the journal and ledger of tasks finished
more than ``after_seconds`` ago and keeps the task row with its result (so
``get_task`` still answers); ``mode="delete"`` removes the task entirely.
Running and pending tasks are never touched: their journals are what makes
them resumable.
"""

from __future__ import annotations

import math

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.durable import _metrics
from stalwart.durable._protocol import RetentionMode, Store
from stalwart.errors import ConfigError, StalwartError
from stalwart.observe import get_logger

__all__ = ["Retention"]

_log = get_logger("stalwart.durable.retention")


class Retention:
    """Applies a retention policy to a store, once or periodically.

    ``after_seconds`` (default 7 days) is how long a finished task keeps its
    journal; ``interval`` (default 1 hour) is the pause between passes of
    :meth:`run_forever`.
    """

    def __init__(
        self,
        store: Store,
        *,
        after_seconds: float = 7 * 86400.0,
        mode: RetentionMode = "compact",
        interval: float = 3600.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if (
            not isinstance(after_seconds, int | float)
            or not math.isfinite(after_seconds)
            or (after_seconds < 0)
        ):
            raise ConfigError(f"retention.after_seconds = {after_seconds!r} must be >= 0")
        if mode not in ("compact", "delete"):
            raise ConfigError(f"retention.mode = {mode!r}; choose 'compact' or 'delete'")
        if not isinstance(interval, int | float) or not 1 <= interval <= 86400 * 7:
            raise ConfigError(f"retention.interval = {interval!r} must be in 1..604800 s")
        self.store = store
        self.after_seconds = float(after_seconds)
        self.mode: RetentionMode = mode
        self.interval = float(interval)
        self.clock = clock

    async def run_once(self) -> int:
        """One pass: returns how many tasks were compacted or deleted."""
        before = self.clock.time() - self.after_seconds
        count = 0
        while True:  # the store purges in bounded chunks; repeat until a pass finds none
            n = await self.store.purge_finished(before, self.mode)
            count += n
            if n < 10_000:
                break
        if count:
            _metrics.RETENTION_PURGED.labels(mode=self.mode).inc(count)
            _log.info("durable_retention_pass", mode=self.mode, tasks=count, store=self.store.url)
        return count

    async def run_forever(self) -> None:
        """Pass every ``interval`` seconds until cancelled; a failing pass is logged, not fatal."""
        while True:
            try:
                await self.run_once()
            except StalwartError as exc:
                _log.warning("durable_retention_failed", error=str(exc), store=self.store.url)
            await self.clock.sleep(self.interval)
