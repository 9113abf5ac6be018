"""The fault plan: a seeded schedule mixing every fault kind, and the scheduler that runs it.

The plan is a pure function of the seed, the run's length and the app (its
agents, its model chains): the same inputs give the same faults at the same
offsets, so a failing chaos run can be replayed. Faults start every
``interval`` seconds (a new round each time every kind has had its turn, in
a shuffled order), between ``warmup`` and ``duration - cooldown``; each lasts
at most ``max_fault`` seconds.

Dependency faults are sized within what the app declares it survives without
changing an answer: outages, hangs and error bursts go to a model that has a
fallback in its chain; tools (read-only or side-effect) are only slowed, below
their deadlines; black holes are shorter than those deadlines. A tool outage is
not in the mix: the app's declared reaction to one (its breaker opens, the model
is told the tool is unavailable and uses an alternative) changes the answer by
design, which the fault-free comparison would rightly report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Sequence

from stalwart.chaos._faults import KINDS, FaultOutcome, FaultSpec, inject
from stalwart.chaos._target import Target

__all__ = ["RESTARTING_KINDS", "PlanConfig", "RestartLoad", "make_plan", "restart_load", "run_plan"]


RESTARTING_KINDS = ("agent_kill", "journal_corrupt", "file_corrupt")
"""The kinds that SIGKILL an agent of the node under test (the corruptions kill the
damaged record's owner so that it replays it): each one costs its supervisor a restart.
A ``node_kill`` lands on the second node, which starts afresh (its own intensity)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PlanConfig:
    """What the plan may touch and how hard."""

    duration: float
    seed: int = 1
    kinds: tuple[str, ...] = KINDS
    interval: float = 2.5
    warmup: float = 2.0
    cooldown: float = 3.0
    max_fault: float = 2.0
    agents: tuple[str, ...] = ()
    fallback_models: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    read_tools: tuple[str, ...] = ()
    """The simulated services of the app's read-only tools (``tool:<service>``)."""
    write_tools: tuple[str, ...] = ()
    """The simulated services of its side-effect tools (only slowed by the default plan)."""
    pg_restart_cmd: str | None = None
    tool_proxies: tuple[str, ...] = ()
    """Tools with a fault proxy in front of their upstream: proxy faults may land there
    (target ``tool:<name>``) as well as on the sim's proxy."""
    sim_proxy: bool = True
    """Whether the sim has a fault proxy (with tool proxies, the proxy faults then go to
    those only)."""
    max_restarts: int | None = None
    """At most this many restarting faults (:data:`RESTARTING_KINDS`) in any window of
    ``restart_period`` seconds: a later one that would exceed it is left out of the plan
    (None: no limit). ``stalwart verify`` keeps its plan within the app's restart
    intensity, so that a supervisor giving up is the app's doing, not verify's kill rate."""
    restart_period: float = 60.0


def _sim_fault(cfg: PlanConfig, rng: random.Random) -> tuple[str, dict[str, object], float]:
    options: list[tuple[str, dict[str, object], float]] = []
    top = cfg.max_fault
    for model in cfg.fallback_models:
        options.append((model, {"outage": True}, rng.uniform(0.5, top)))
        options.append((model, {"hang": True, "hang_s": 1.0}, rng.uniform(0.5, top)))
        options.append((model, {"status": 503, "error_rate": 0.5}, rng.uniform(0.5, top)))
    for target in (*cfg.models, *cfg.read_tools, *cfg.write_tools):
        options.append((target, {"latency_ms": rng.choice([100, 250, 400])}, top))
    return rng.choice(options)


def _spec(kind: str, at: float, cfg: PlanConfig, rng: random.Random) -> FaultSpec | None:
    top = cfg.max_fault
    agent = rng.choice(cfg.agents) if cfg.agents else ""
    if kind == "agent_kill":
        return FaultSpec(kind, at, 0.0, agent)
    if kind == "node_kill":
        return FaultSpec(kind, at, round(rng.uniform(1.0, max(1.0, top)), 2), "peer")
    if kind == "agent_stop":
        return FaultSpec(kind, at, round(rng.uniform(0.3, min(top, 1.5)), 2), agent)
    if kind == "sim":
        if not (cfg.fallback_models or cfg.read_tools or cfg.models):
            return None
        target, params, duration = _sim_fault(cfg, rng)
        return FaultSpec(kind, at, round(duration, 2), target, params)
    if kind == "proxy":
        target = "sim"
        if cfg.tool_proxies:  # (no draw without them: the seeded plans stay as they were)
            sim = ("sim",) if cfg.sim_proxy else ()
            target = rng.choice((*sim, *(f"tool:{n}" for n in cfg.tool_proxies)))
        if rng.random() < 0.5:
            return FaultSpec(kind, at, top, target, {"latency_ms": rng.choice([50, 100, 150])})
        return FaultSpec(kind, at, round(rng.uniform(0.3, min(top, 1.5)), 2), target,
                         {"blackhole": True})  # fmt: skip
    if kind == "store_lock":
        return FaultSpec(kind, at, round(rng.uniform(0.3, top), 2), "store")
    if kind in ("journal_corrupt", "file_corrupt"):
        return FaultSpec(kind, at, 0.0, "store")
    if kind == "pg_restart":
        return FaultSpec(kind, at, 0.0, "store", {"cmd": cfg.pg_restart_cmd})
    if kind == "disk_full":
        return FaultSpec(kind, at, round(rng.uniform(0.3, min(top, 1.0)), 2), "store")
    return None


def make_plan(cfg: PlanConfig) -> list[FaultSpec]:
    """The faults of a run (see the module docstring)."""
    rng = random.Random(cfg.seed)
    plan: list[FaultSpec] = []
    if not cfg.kinds:
        return plan
    at = cfg.warmup
    end = cfg.duration - cfg.cooldown
    order: list[str] = []
    restarts: list[float] = []  # offsets of the restarting faults kept
    while at < end:
        if not order:
            order = list(cfg.kinds)
            rng.shuffle(order)
        spec = _spec(order.pop(), round(at, 3), cfg, rng)
        if spec is not None and spec.kind in RESTARTING_KINDS and cfg.max_restarts is not None:
            # the supervisor's window (t - period, t]: left out when it would hold one too many
            recent = sum(r > spec.at - cfg.restart_period for r in restarts)
            if recent >= cfg.max_restarts:
                spec = None
            else:
                restarts.append(spec.at)
        if spec is not None:
            duration = min(spec.duration, max(0.0, end - at))
            plan.append(dataclasses.replace(spec, duration=round(duration, 2)))
        at += cfg.interval * rng.uniform(0.7, 1.3)
    return plan


@dataclasses.dataclass(frozen=True, slots=True)
class RestartLoad:
    """The restarts a plan forces on the node under test, against its restart intensity."""

    period: float
    busiest: int
    """Restarting faults in the plan's busiest window of ``period`` seconds."""
    window_start: float
    """Where that window starts (seconds into the run)."""
    per_target: dict[str, int]
    """Those faults by target: the agent killed, or ``store`` for a corruption (its
    victim is the damaged record's owner, known only when the fault runs)."""
    total: int

    def exceeds(self, intensity: int) -> bool:
        """Whether the plan alone makes a supervisor allowing ``intensity`` restarts in
        ``period`` give up (the ``intensity + 1``-th restart in a window gives up)."""
        return self.busiest > intensity


def restart_load(plan: Sequence[FaultSpec], period: float) -> RestartLoad:
    """The most restarting faults of ``plan`` that fall in any window of ``period``
    seconds, as :class:`~stalwart.runtime._intensity.RestartIntensity` counts them (a
    window ``(t - period, t]``), taking each fault's restart at its offset. An upper
    bound: a corruption whose owner runs on the second node, or a fault that is skipped,
    restarts nothing here."""
    times = sorted(s.at for s in plan if s.kind in RESTARTING_KINDS)
    busiest, start = 0, 0.0
    lo = 0
    for hi, at in enumerate(times):
        while times[lo] <= at - period:
            lo += 1
        if hi - lo + 1 > busiest:
            busiest, start = hi - lo + 1, times[lo]
    per: dict[str, int] = {}
    for s in plan:
        if s.kind in RESTARTING_KINDS and start <= s.at < start + period:
            per[s.target] = per.get(s.target, 0) + 1
    return RestartLoad(period, busiest, start, dict(sorted(per.items())), len(times))


UNDO_SLACK_S = 120.0
"""How long after the plan's last fault ends its undos may take before the run gives up."""


async def run_plan(
    t: Target,
    plan: Sequence[FaultSpec],
    *,
    on_fault: Callable[[FaultOutcome], None] | None = None,
) -> list[FaultOutcome]:
    """Run each fault at its offset from now; returns their outcomes (in plan order).

    Cancelling the run cancels the faults in force, whose ``finally`` undoes them.
    """
    start = time.monotonic()

    async def one(spec: FaultSpec) -> FaultOutcome:
        await asyncio.sleep(max(0.0, start + spec.at - time.monotonic()))
        out = await inject(t, spec)
        if on_fault is not None:
            on_fault(out)
        return out

    tasks = [asyncio.ensure_future(one(s)) for s in plan]
    try:
        # past the last fault's end: its undo's time (a killed peer node started again
        # imports the app, over 30 s for a framework's app on a busy 2-core machine)
        horizon = max((s.at + s.duration for s in plan), default=0.0) + UNDO_SLACK_S
        async with asyncio.timeout(horizon):
            return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
