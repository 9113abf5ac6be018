"""The sliding windows a circuit breaker measures its rates over (resilience4j's two kinds).

- :class:`CountWindow` — the last ``size`` outcomes, in a ring.
- :class:`TimeWindow` — the outcomes of the last ``duration`` seconds, in
  ``TIME_BUCKETS`` buckets (resilience4j uses one bucket per second; see
  docs/resilience.md for the difference).

Both keep running totals, so recording and reading are O(1).
"""

from __future__ import annotations

import math

__all__ = ["TIME_BUCKETS", "CountWindow", "TimeWindow", "Window"]

TIME_BUCKETS = 20


class CountWindow:
    """The last ``size`` outcomes in a ring, with running totals (O(1) per call)."""

    __slots__ = ("_codes", "_next", "calls", "failures", "slow")

    def __init__(self, size: int) -> None:
        self._codes: list[int] = [-1] * size  # bit 1: failure, bit 2: slow; -1: empty
        self._next = 0
        self.calls = self.failures = self.slow = 0

    def record(self, failure: bool, slow: bool, now: float) -> None:
        old = self._codes[self._next]
        if old >= 0:
            self.calls -= 1
            self.failures -= old & 1
            self.slow -= (old >> 1) & 1
        self._codes[self._next] = int(failure) | (int(slow) << 1)
        self._next = (self._next + 1) % len(self._codes)
        self.calls += 1
        self.failures += failure
        self.slow += slow

    def expire(self, now: float) -> None:
        return None


class TimeWindow:
    """Outcomes of the last ``duration`` seconds in ``TIME_BUCKETS`` buckets, with totals."""

    __slots__ = ("_buckets", "_epoch", "_width", "calls", "failures", "slow")

    def __init__(self, duration: float, now: float) -> None:
        self._width = duration / TIME_BUCKETS
        self._buckets = [[0, 0, 0] for _ in range(TIME_BUCKETS)]  # calls, failures, slow
        self._epoch = math.floor(now / self._width)
        self.calls = self.failures = self.slow = 0

    def expire(self, now: float) -> None:
        epoch = math.floor(now / self._width)
        if epoch <= self._epoch:
            return
        for step in range(self._epoch + 1, min(epoch, self._epoch + TIME_BUCKETS) + 1):
            bucket = self._buckets[step % TIME_BUCKETS]
            self.calls -= bucket[0]
            self.failures -= bucket[1]
            self.slow -= bucket[2]
            bucket[0] = bucket[1] = bucket[2] = 0
        self._epoch = epoch

    def record(self, failure: bool, slow: bool, now: float) -> None:
        self.expire(now)
        bucket = self._buckets[self._epoch % TIME_BUCKETS]
        bucket[0] += 1
        bucket[1] += failure
        bucket[2] += slow
        self.calls += 1
        self.failures += failure
        self.slow += slow


Window = CountWindow | TimeWindow
"""Either kind of window."""
