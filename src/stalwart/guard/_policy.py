"""What one agent declares about its security: inputs, taint, outputs, budget."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from stalwart.errors import ConfigError
from stalwart.guard._budget import Budget
from stalwart.guard._inputs import InputLimits
from stalwart.guard._redact import OutputPolicy
from stalwart.guard._taint import TaintPolicy

__all__ = ["RateLimit", "Security"]


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """Model requests and tokens (prompt + max answer) per minute; a call waits up to
    ``max_wait_s`` for room, else fails with :class:`~stalwart.errors.RateLimited`."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ConfigError("RateLimit needs requests_per_minute or tokens_per_minute")
        for value in (self.requests_per_minute, self.tokens_per_minute):
            if value is not None and value <= 0:
                raise ConfigError(f"RateLimit values must be > 0, got {value}")
        if self.max_wait_s < 0:
            raise ConfigError("RateLimit.max_wait_s must be >= 0")


@dataclasses.dataclass(frozen=True, slots=True)
class Security:
    """An agent's security settings (``LLMAgent(security=Security(...))``).

    Every field has a safe default: inputs bounded and normalized, side-effect
    tools guarded by taint, outputs redacted, no spend limit.
    """

    inputs: InputLimits = dataclasses.field(default_factory=InputLimits)
    input_schema: Any = None
    """A pydantic model (or any type pydantic validates) for the task input."""
    taint: TaintPolicy = dataclasses.field(default_factory=TaintPolicy)
    output: OutputPolicy = "redact"
    """What to do with PII or credentials in a task's output: redact, mask or block."""
    budget: Budget = dataclasses.field(default_factory=Budget)
    rate: RateLimit | None = None
    """Model calls of this agent (all its chains together)."""
    model_rates: Mapping[str, RateLimit] = dataclasses.field(default_factory=dict)
    """Model calls per chain name (``"main"``), in this agent's process."""

    def __post_init__(self) -> None:
        if self.output not in ("redact", "mask", "block"):
            raise ConfigError(f"Security.output must be redact, mask or block, got {self.output!r}")
