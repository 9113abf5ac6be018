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
                     "proxy:<VAR>=<url>"
                                     the tool's own function runs and reaches its real
                                     upstream <url> (loopback, with a port) through a
                                     TCP fault proxy verify starts in front of it: the
                                     agent processes get the environment variable <VAR>
                                     set to the proxy's URL (the same URL with the
                                     proxy's host and port), so a tool that reads its
                                     URL from <VAR> when called goes through it; the
                                     items that fault tools put latency, black holes
                                     and resets on the proxy
                     "proxy:<VAR>"   the same, the upstream being <VAR>'s value in the
                                     environment verify runs in
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
import re
from collections.abc import Mapping

from stalwart.errors import ConfigError

__all__ = ["FAULT_MODES", "VerifyProfile", "fault_mode", "proxy_target"]

FAULT_MODES = ("double", "sim", "proxy", "none")

_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def fault_mode(value: str) -> tuple[str, str]:
    """``value`` split into (mode, argument): ``"sim:payments"`` -> ("sim", "payments"),
    ``"proxy:RATES_URL=http://127.0.0.1:8123"`` -> ("proxy", "RATES_URL=http://...")."""
    mode, _, arg = value.partition(":")
    if (
        mode not in FAULT_MODES
        or (mode in ("sim", "proxy") and not arg)
        or (mode == "proxy" and not _VAR.match(arg.partition("=")[0]))
        or (mode in ("double", "none") and arg)
    ):
        raise ConfigError(
            f"verify profile: tool fault mode {value!r} is not one of 'double', "
            "'sim:<service>', 'proxy:<VAR>=<url>', 'proxy:<VAR>', 'none' (<VAR>: the "
            "environment variable the tool reads its URL from)"
        )
    return mode, arg


def proxy_target(arg: str) -> tuple[str, str | None]:
    """A ``proxy:`` mode's argument split into (variable, upstream URL or None: the
    variable's value in verify's environment)."""
    var, eq, url = arg.partition("=")
    return var, (url if eq else None)


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
