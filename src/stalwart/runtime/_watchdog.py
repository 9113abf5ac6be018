"""The watchdog's judgement of one agent process: whether to kill it, and why.

:class:`~stalwart.runtime._host.ProcessHost` runs the watchdog (its module docstring says
when an agent counts as hung, past its task's deadline or over its memory limit); this is
the decision for one process at one tick, apart from the loop that acts on it, so that
the rules read in one place.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from stalwart.runtime._process import AgentProcess

__all__ = ["Verdict", "judge"]


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """Kill the process: the exit ``reason``, what the host saw (``detail``), the event
    to emit with its fields, and the grace before SIGKILL."""

    reason: str
    detail: str
    event: str
    fields: dict[str, Any]
    grace: float = 0.0


def judge(
    proc: AgentProcess, now: float, interval: float, threshold: float, *, check_memory: bool
) -> Verdict | None:
    """Whether the running agent ``proc`` must be killed at ``now`` (a monotonic time):
    its task held its loop past the task's deadline, its loop is stuck, or (when
    ``check_memory``) its own memory is over its limit. None: leave it be."""
    # silent: nothing from the loop itself (frames); lag: what the pulse thread says of
    # the loop. Both must agree before a loop counts as stuck: a loop that is only slow
    # (a busy machine, a burst of work) still sends frames. Without a fresh pulse (a
    # frozen process, an old child) silence decides.
    silent = now - proc.last_seen
    pulse = proc.pulse
    # an idle agent's pulse says how much later than usual its next may come
    pulsing = pulse is not None and now - proc.last_pulse <= threshold + pulse.quiet
    lag = pulse.lag if pulse is not None and pulsing else silent
    if pulse is not None and pulsing and pulse.overdue and min(lag, silent) >= interval:
        return Verdict(
            "task_timeout",
            f"its event loop was held {lag:.1f} s by task {pulse.busy!r}, "
            "past that task's task_timeout",
            "agent_task_timeout",
            {"agent": proc.name, "pid": proc.pid, "task": pulse.busy, "lag_s": lag},
        )
    if silent > threshold and lag > threshold:
        grace = proc.spec.shutdown
        return Verdict(
            "hung",
            f"its event loop did not run for {lag:.1f} s (threshold {threshold:g} s)"
            if pulsing
            else f"nothing came from it for {silent:.1f} s (threshold {threshold:g} s)",
            "agent_hung",
            {
                "agent": proc.name,
                "pid": proc.pid,
                "silent_s": round(silent, 3),
                "loop_lag_s": lag,
                "threshold_s": threshold,
                "blame": None if pulse is None else (pulse.busy or None),
            },
            grace=0.0 if grace == "brutal_kill" else float(grace),
        )
    limit = proc.spec.memory_limit_mb
    if check_memory and limit is not None:
        own = proc.own_bytes()
        if own is not None and own > limit * 1024 * 1024:
            return Verdict(
                "memory_limit",
                f"its own memory reached {own / 2**20:.0f} MiB, over its memory_limit_mb "
                f"of {limit:g}",
                "agent_memory_limit",
                {
                    "agent": proc.name,
                    "pid": proc.pid,
                    "rss_mb": round(own / 2**20, 1),  # the event's field name, kept
                    "limit_mb": limit,
                },
            )
    return None
