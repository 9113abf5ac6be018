"""Fault injection for the simulated models and tool services."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from stalwart.errors import ConfigError

__all__ = ["BODY_FAULTS", "Fault", "FaultBook"]

BODY_FAULTS = (
    "malformed_json",
    "truncated",
    "html",
    "huge",
    "not_object",
    "wrong_shape",
    "stream_cut",  # an event stream that breaks off after its first piece of text
)


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """What goes wrong for one target (a model name, or ``tool:NAME``).

    outage
        Every request fails with 503 (no answer is ever produced).
    status / error_rate
        Fail with ``status`` on this share of requests (deterministic: the
        first request of each ``1/error_rate`` block fails; 1.0 fails all).
    retry_after
        Seconds sent as ``Retry-After`` on injected errors.
    latency_ms
        Added before answering.
    hang
        Never answer (until the client gives up or ``hang_s`` passes).
    body
        Answer 200 with a broken body: one of :data:`BODY_FAULTS`.
    skip
        The first ``skip`` requests after the fault is set pass untouched (a hang armed
        for the third request before the first one is sent: no race with the client).
    """

    outage: bool = False
    status: int | None = None
    error_rate: float = 1.0
    retry_after: float | None = None
    latency_ms: float = 0.0
    hang: bool = False
    hang_s: float = 120.0
    body: str | None = None
    skip: int = 0

    def __post_init__(self) -> None:
        if self.status is not None and not 400 <= self.status <= 599:
            raise ConfigError(f"fault status must be an HTTP error code, got {self.status}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ConfigError(f"fault error_rate must be in [0, 1], got {self.error_rate}")
        if self.body is not None and self.body not in BODY_FAULTS:
            raise ConfigError(f"fault body must be one of {BODY_FAULTS}, got {self.body!r}")
        if self.latency_ms < 0 or self.hang_s <= 0:
            raise ConfigError("fault latency_ms must be >= 0 and hang_s > 0")
        if self.skip < 0:
            raise ConfigError(f"fault skip must be >= 0, got {self.skip}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown fault field(s) {sorted(unknown)}")
        return cls(**data)


class FaultBook:
    """The faults in force, per target; thread-safe (the sim may run in a thread)."""

    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._counts: dict[str, int] = {}
        self._passed: dict[str, int] = {}
        self._lock = threading.Lock()

    def set(self, target: str, fault: Fault) -> None:
        with self._lock:
            self._faults[target] = fault
            self._counts[target] = 0
            self._passed[target] = 0

    def clear(self, target: str | None = None) -> None:
        with self._lock:
            if target is None:
                self._faults.clear()
            else:
                self._faults.pop(target, None)

    def get(self, target: str) -> Fault | None:
        return self._faults.get(target)

    def skips(self, target: str, fault: Fault) -> bool:
        """Whether this request is one of the first ``fault.skip`` (it then passes)."""
        with self._lock:
            n = self._passed.get(target, 0)
            if n >= fault.skip:
                return False
            self._passed[target] = n + 1
            return True

    def should_fail(self, target: str, fault: Fault) -> bool:
        with self._lock:
            n = self._counts.get(target, 0)
            self._counts[target] = n + 1
        if fault.error_rate >= 1.0:
            return True
        if fault.error_rate <= 0.0:
            return False
        period = max(1, round(1 / fault.error_rate))
        return n % period == 0

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {k: dataclasses.asdict(v) for k, v in self._faults.items()}
