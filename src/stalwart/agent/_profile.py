"""The verification profile an app declares: how ``stalwart verify`` may drive and fault it.

Fields (Python: ``App(verify=VerifyProfile(...))``; TOML: a ``[verify]`` table with the
same keys)::

    workload       "module:function"; function(count, seed) -> list of task inputs for
                   the entry agent (the same list for the same seed). Overrides
                   App.workload. Without one, the items that drive tasks are not-run.
    tools          per tool name, how verify may fault it (and where its calls go):
                     "double"        the tool's own double (@tool(double=fn)) runs instead
                                     of the real function during verification (the
                                     default for a tool that has a double)
                     "sim:<service>" the tool talks to the simulated world's service
                                     <service> (the sim stands in for the real target)
                     "none"          cannot be faulted: items that need to fault it are
                                     not-run, naming the tool
                   A tool not listed, with no double, is "none".
    latency_p99_s  LC-1's bound on the p99 latency at each load level (default: none
                   given; verify applies max(2 s, 3x the 1x level's p99) and says so)
    manifest       the orchestrator manifest MA-1 reads for the probes (default: none;
                   --manifest overrides)

Models need no entry: the simulated provider stands in for every model during
verification, speaking the real provider's wire format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from stalwart.errors import ConfigError

__all__ = ["FAULT_MODES", "VerifyProfile", "fault_mode"]

FAULT_MODES = ("double", "sim", "none")


def fault_mode(value: str) -> tuple[str, str]:
    """``value`` split into (mode, argument): ``"sim:payments"`` -> ("sim", "payments")."""
    mode, _, arg = value.partition(":")
    if mode not in FAULT_MODES or (mode == "sim" and not arg):
        raise ConfigError(
            f"verify profile: tool fault mode {value!r} is not one of 'double', "
            "'sim:<service>', 'none'"
        )
    return mode, arg


@dataclasses.dataclass(frozen=True, slots=True)
class VerifyProfile:
    """How ``stalwart verify`` may drive and fault this app (module docstring)."""

    workload: str | None = None
    tools: Mapping[str, str] = dataclasses.field(default_factory=dict)
    latency_p99_s: float | None = None
    manifest: str | None = None

    def __post_init__(self) -> None:
        for value in self.tools.values():
            fault_mode(value)
        if self.latency_p99_s is not None and not self.latency_p99_s > 0:
            raise ConfigError("verify profile: latency_p99_s must be a positive number of seconds")
