from __future__ import annotations

import collections

from stalwart.clock import Clock

__all__ = ["RestartIntensity"]


class RestartIntensity:
    """OTP's restart intensity: at most ``intensity`` restarts in any ``period`` seconds.

    ``record()`` is called when a restart is about to happen. It returns False
    when this restart would be the ``intensity + 1``-th within the last
    ``period`` seconds: the supervisor must then give up. With the default
    5 in 60 s, five quick restarts are allowed and the sixth gives up.
    """

    def __init__(self, intensity: int, period: float, clock: Clock) -> None:
        self.intensity = intensity
        self.period = period
        self._clock = clock
        self._restarts: collections.deque[float] = collections.deque()

    def record(self) -> bool:
        now = self._clock.monotonic()
        self._restarts.append(now)
        while self._restarts and self._restarts[0] <= now - self.period:
            self._restarts.popleft()
        return len(self._restarts) <= self.intensity

    @property
    def recent(self) -> int:
        """Restarts counted in the current window."""
        now = self._clock.monotonic()
        return sum(1 for t in self._restarts if t > now - self.period)
