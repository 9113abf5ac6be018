from __future__ import annotations

import dataclasses
import math
from typing import Any

from stalwart.errors import ConfigError

__all__ = ["TIMEOUT_RANGES", "Timeouts"]

# Allowed (min, max) seconds per operation kind. The checklist fixes three ranges
# (health 2-5 s, model 30-120 s, tools 5-30 s); the others are ours, chosen so that
# nothing can be configured to wait forever or to fail before it could possibly work.
TIMEOUT_RANGES: dict[str, tuple[float, float]] = {
    "health": (2.0, 5.0),
    "model": (30.0, 120.0),
    "tool": (5.0, 30.0),
    "agent_call": (0.001, 600.0),
    "store": (0.5, 60.0),
    "notifier": (1.0, 60.0),
    "secrets": (0.5, 30.0),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    """Default deadline, in seconds, for each kind of operation.

    An operation that is not given an explicit timeout uses the one for its
    kind; there is no "forever". Values outside :data:`TIMEOUT_RANGES` are
    rejected at start-up.
    """

    health: float = 3.0
    model: float = 60.0
    tool: float = 15.0
    agent_call: float = 5.0
    store: float = 10.0
    notifier: float = 10.0
    secrets: float = 5.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            low, high = TIMEOUT_RANGES[field.name]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(
                    f"timeouts.{field.name} must be a number of seconds, got {value!r}"
                )
            if not math.isfinite(value) or not low <= value <= high:
                raise ConfigError(
                    f"timeouts.{field.name} = {value!r} is outside the allowed range "
                    f"{low:g}-{high:g} s; set a value in that range"
                )

    def for_kind(self, kind: str) -> float:
        """The default timeout for ``kind``; an unknown kind is a ConfigError."""
        if kind not in TIMEOUT_RANGES:
            raise ConfigError(
                f"unknown operation kind {kind!r}; known kinds: {', '.join(TIMEOUT_RANGES)}"
            )
        value: float = getattr(self, kind)
        return value

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Timeouts:
        """Build from a config mapping; unknown keys are an error, not ignored."""
        unknown = set(data) - set(TIMEOUT_RANGES)
        if unknown:
            raise ConfigError(
                f"unknown timeout kind(s) {sorted(unknown)}; "
                f"known kinds: {', '.join(TIMEOUT_RANGES)}"
            )
        return cls(**data)
