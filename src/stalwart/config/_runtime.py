from __future__ import annotations

import dataclasses
import math

from stalwart.config._timeouts import Timeouts
from stalwart.errors import ConfigError

__all__ = ["RuntimeSettings"]


def _positive(name: str, value: float, *, upper: float | None = None) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value <= 0 or (upper is not None and value > upper):
        bound = f"in (0, {upper:g}]" if upper is not None else "> 0"
        raise ConfigError(f"{name} = {value!r} must be {bound}")


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Settings of the process runtime (see ``docs/runtime.md``).

    heartbeat_interval
        Seconds between an agent's heartbeats. An agent silent for
        ``heartbeat_interval * hang_after_missed`` is declared hung and killed.
    hang_after_missed
        Missed intervals before an agent counts as hung (default 1.5, so a hang
        is detected within 2 intervals including the watchdog's tick).
    start_timeout
        Seconds an agent has to start and report ready before it counts as a
        failed start (default 30: an app that preloads a framework SDK took over 10 s
        to start on a saturated 2-core machine, and a slow start is not a failed one).
    max_frame_bytes
        Largest message frame on a process channel; a larger length prefix is
        a protocol error (the stream cannot be trusted after it).
    timeouts
        Default deadlines per operation kind.
    """

    heartbeat_interval: float = 1.0
    hang_after_missed: float = 1.5
    start_timeout: float = 30.0
    max_frame_bytes: int = 16 * 1024 * 1024
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)

    def __post_init__(self) -> None:
        _positive("runtime.heartbeat_interval", self.heartbeat_interval, upper=60.0)
        _positive("runtime.hang_after_missed", self.hang_after_missed, upper=100.0)
        if self.hang_after_missed < 1.0:
            raise ConfigError(
                f"runtime.hang_after_missed = {self.hang_after_missed!r} must be >= 1.0, "
                "or every agent would count as hung between two heartbeats"
            )
        _positive("runtime.start_timeout", self.start_timeout, upper=600.0)
        if not isinstance(self.max_frame_bytes, int) or not 1024 <= self.max_frame_bytes <= 2**30:
            raise ConfigError(
                f"runtime.max_frame_bytes = {self.max_frame_bytes!r} must be an int in 1024..2**30"
            )

    @property
    def hang_threshold(self) -> float:
        """Seconds of silence after which an agent counts as hung."""
        return self.heartbeat_interval * self.hang_after_missed
