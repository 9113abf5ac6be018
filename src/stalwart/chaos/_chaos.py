"""The chaos run: open-loop load on an app while the fault plan runs, then the verdict.

Steps: start the app (see :mod:`stalwart.chaos._target`); send tasks at
``rate`` for ``duration`` seconds while :func:`run_plan` injects the faults;
undo every fault; follow every task until it finishes (at most ``drain``
seconds); check each corrupted record was detected; then run the *same* tasks
(same ids, inputs and seed) on a fresh node and store with no fault, and
compare the results of every task completed under chaos with it.

The run passes when: no task is lost (each submitted task ended ``succeeded``
or ``failed`` with a stated reason), no side effect was delivered twice (the
sim services' per-idempotency-key counts), every completed task's result
equals the fault-free one (fields that differ between any two runs, such as
timestamps, token usage and which model of a chain answered, are left out),
every corrupted record still damaged was quarantined, and no fault is left in
force.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stalwart.agent import App
from stalwart.chaos._driver import Driver
from stalwart.chaos._faults import KINDS, FaultOutcome, FaultSpec
from stalwart.chaos._plan import PlanConfig, make_plan, run_plan
from stalwart.chaos._proxy import FaultProxy
from stalwart.chaos._reference import compare_with_reference
from stalwart.chaos._target import (
    Target,
    TargetConfig,
    load_inputs,
    run_target,
    workload_failed,
    workload_ref,
)
from stalwart.errors import StalwartError

__all__ = ["ChaosConfig", "plan_config", "planned_faults", "run_chaos"]


@dataclasses.dataclass(frozen=True, slots=True)
class ChaosConfig:
    """A chaos run's settings (the CLI's options, with the same defaults)."""

    target: TargetConfig
    duration: float = 300.0
    rate: float = 10.0
    kinds: tuple[str, ...] = KINDS
    interval: float = 2.5
    max_fault: float = 2.0
    drain: float = 120.0
    max_tasks: int = 100_000
    reference: bool = True
    peer: bool = True
    pg_restart_cmd: str | None = None
    extra: tuple[FaultSpec, ...] = ()
    """Faults added to the seeded plan as given (e.g. one beyond the app's resilience,
    to see the run fail)."""
    fit_intensity: bool = False
    """Keep the plan's restarting faults (agent kills, corruptions whose owner is killed)
    within the app's restart intensity: at most ``max(1, intensity - 1)`` in any window
    of the app's restart period (the one left over absorbs a restart a fault causes
    indirectly, such as a stopped agent killed as hung). ``stalwart verify``'s LC-2 sets
    it: the app is judged under chaos as configured, never given up on verify's kill
    rate alone."""
    tool_proxies: Mapping[str, FaultProxy] = dataclasses.field(default_factory=dict)
    """Per tool, a started fault proxy in front of its upstream that the run may fault
    besides its own (``stalwart verify``'s, for tools in the profile's proxy mode): the
    plan's proxy faults then land on these too (target ``tool:<name>``)."""


def plan_config(
    cfg: ChaosConfig,
    app: App,
    *,
    uses_sim: bool,
    sim_proxy: bool,
    tool_proxies: Sequence[str],
) -> PlanConfig:
    """The fault plan's settings for a run of ``cfg`` on ``app`` (whether its agents use
    the sim, through a fault proxy, and which tools have one in front of their upstream):
    all the plan depends on, so the plan is known before the run starts."""
    chains = app.models
    models = tuple(
        sorted({m.removeprefix("sim:") for chain in chains.values() for m in chain if "sim:" in m})
    )
    fallback = tuple(
        sorted(
            {c[0].removeprefix("sim:") for c in chains.values() if len(c) > 1 and "sim:" in c[0]}
        )
    )
    # the simulated services the app's verification profile puts its tools on
    side = {tool.name: tool.side_effect for agent in app.agents for tool in agent.tools}
    services = {
        name: f"tool:{mode.partition(':')[2]}"
        for name, mode in app.verify.tools.items()
        if mode.startswith("sim:")
    }
    reads = tuple(sorted({svc for n, svc in services.items() if not side.get(n)}))
    writes = tuple(sorted({svc for n, svc in services.items() if side.get(n)}))
    return PlanConfig(
        duration=cfg.duration,
        seed=cfg.target.seed,
        kinds=(*cfg.kinds, "pg_restart") if cfg.pg_restart_cmd else cfg.kinds,
        interval=cfg.interval,
        max_fault=cfg.max_fault,
        agents=tuple(a.name for a in app.agents),
        fallback_models=fallback if uses_sim else (),
        models=models if uses_sim else (),
        read_tools=reads if uses_sim else (),
        write_tools=writes if uses_sim else (),
        pg_restart_cmd=cfg.pg_restart_cmd,
        tool_proxies=tuple(sorted(tool_proxies)),
        sim_proxy=sim_proxy,
        max_restarts=max(1, app.intensity - 1) if cfg.fit_intensity else None,
        restart_period=app.period,
    )


def planned_faults(
    cfg: ChaosConfig, app: App, *, tool_proxies: Sequence[str] | None = None
) -> list[FaultSpec]:
    """The faults :func:`run_chaos` will inject on ``app`` with ``cfg`` (the seeded plan
    and ``cfg.extra``), known before any node starts: as the run's node will have it,
    the app uses the sim when it declares one and no shared sim is given
    (``$STALWART_SIM_URL``), through a fault proxy when ``cfg.target.proxy``;
    ``tool_proxies``: the tools that will have a fault proxy (default: those of ``cfg``)."""
    uses_sim = bool(app.sim) and not os.environ.get("STALWART_SIM_URL")
    planned = plan_config(
        cfg,
        app,
        uses_sim=uses_sim,
        sim_proxy=uses_sim and cfg.target.proxy,
        tool_proxies=tuple(cfg.tool_proxies if tool_proxies is None else tool_proxies),
    )
    return sorted([*make_plan(planned), *cfg.extra], key=lambda f: f.at)


def _plan_config(cfg: ChaosConfig, t: Target) -> PlanConfig:
    return plan_config(
        cfg,
        t.service.app,
        uses_sim=t.sim is not None,
        sim_proxy=t.proxy is not None,
        tool_proxies=tuple(t.tool_proxies),
    )


async def _check_corruption(t: Target, faults: list[FaultOutcome]) -> None:
    """Detected: the damaged record was quarantined (a read of the journal quarantines it)."""
    store = t.service.store
    assert store is not None
    for f in faults:
        if f.spec.kind not in ("journal_corrupt", "file_corrupt") or f.status != "applied":
            continue
        assert f.task_id is not None
        try:
            if not await store.quarantined(f.task_id):
                await store.load_journal(f.task_id)  # what a resume or an audit would read
            f.detected = bool(await store.quarantined(f.task_id))
        except StalwartError as exc:
            f.detail += f"; check failed: {exc}"
            f.detected = False
        if not f.detected and f.spec.kind == "file_corrupt":
            # SQLite checkpointed a newer copy of the page over the damage: nothing to detect
            f.detected = None
            f.detail += "; the damaged page was overwritten by a later checkpoint"


async def run_chaos(
    cfg: ChaosConfig, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run chaos under load, then the fault-free reference; returns the JSON result."""
    tc = cfg.target
    inputs = load_inputs(workload_ref(tc), tc.seed)
    say = progress or (lambda _msg: None)

    async def chaotic(t: Target) -> dict[str, Any]:
        driver = Driver(t.tasks, t.agent, inputs, seed=tc.seed)
        planned = _plan_config(cfg, t)
        plan = sorted([*make_plan(planned), *cfg.extra], key=lambda f: f.at)
        say(f"chaos: {len(plan)} faults over {cfg.duration:g} s at {cfg.rate:g} tasks/s")
        if not plan and planned.kinds:
            say(
                f"chaos: no fault fits between the warm-up ({planned.warmup:g} s) and the "
                f"cool-down ({planned.cooldown:g} s) of a {cfg.duration:g} s run: give "
                f"--duration {planned.warmup + planned.cooldown + planned.interval:g}s or more"
            )

        def on_fault(out: FaultOutcome) -> None:
            say(f"  {out.spec.at:7.2f}s {out.spec.kind:<16} {out.status:<8} {out.detail}")

        faults_task = asyncio.ensure_future(run_plan(t, plan, on_fault=on_fault))
        try:
            await driver.open_loop("chaos", cfg.rate, cfg.duration, max_tasks=cfg.max_tasks)
            faults = await faults_task
        finally:
            faults_task.cancel()
            await asyncio.gather(faults_task, return_exceptions=True)
            t.undo.run_all()
        left_in_force = t.undo.pending()
        drained = await driver.drain(cfg.drain)
        await _check_corruption(t, faults)
        return {
            "agent": t.agent,
            "summary": driver.summary(),
            "log": driver.log,
            "faults": faults,
            "left_in_force": left_in_force,
            "drain_s": drained,
            "side_effects": t.side_effects(),
            "peer": (
                {"node_kills": t.peer.kills, "incarnations": t.peer.incarnations}
                if t.peer is not None
                else None
            ),
        }

    started = time.monotonic()
    wants_peer = cfg.peer and "node_kill" in cfg.kinds
    chaos = await run_target(
        dataclasses.replace(tc, peer=wants_peer), chaotic, tool_proxies=cfg.tool_proxies
    )
    summary = chaos["summary"]
    log = chaos["log"]
    comparison: dict[str, Any] = {}
    if cfg.reference:
        say(f"reference: the same {len(log)} tasks with no fault")
        comparison = await compare_with_reference(tc, inputs, log, drain=cfg.drain)
    effects = chaos["side_effects"]
    duplicates = sum(effects["duplicates"].values()) if effects else None
    faults: list[FaultOutcome] = chaos["faults"]
    undetected = [f for f in faults if f.detected is False]
    result: dict[str, Any] = {
        "command": "chaos",
        "app": tc.app,
        "seed": tc.seed,
        "duration_s": cfg.duration,
        "rate": cfg.rate,
        **{k: summary[k] for k in ("submitted", "completed", "failed", "lost", "rejected")},
        "duplicate_side_effects": duplicates,
        "results_match_fault_free": comparison.get("results_match_fault_free"),
        "compared_with_fault_free": comparison.get("compared", 0),
        "reference_unfinished": comparison.get("reference_unfinished", 0),
        "not_compared_unfinished_in_reference": comparison.get(
            "not_compared_unfinished_in_reference", []
        ),
        "mismatches": comparison.get("mismatches", []),
        "unknown_outcomes": comparison.get("unknown_outcomes", []),
        "latency_s": summary["latency_s"],
        "failures": summary["failures"],
        "unclear_failures": summary["unclear_failures"],
        "lost_ids": summary["lost_ids"],
        "faults": [f.as_dict() for f in faults],
        "faults_by_kind": _by_kind(faults),
        "faults_left_in_force": chaos["left_in_force"],
        "corruption_undetected": len(undetected),
        "side_effects": effects,
        "peer_node": chaos["peer"],
        "reference": comparison.get("reference"),
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    # a run in which no fault took effect proves nothing about faults, and one whose
    # tasks all failed without faults (the reference) proves nothing: not-run, not passed
    result["faults_applied"] = sum(f.status == "applied" for f in faults)
    reference = comparison.get("reference")
    result["not_run"] = (
        workload_failed(reference, chaos["agent"], "tasks of the fault-free run")
        if reference
        else None
    ) or (
        None
        if result["faults_applied"]
        else "no fault took effect (see the fault table), so this run proves nothing about faults"
    )
    result["exercised"] = result["not_run"] is None
    result["passed"] = bool(
        result["exercised"]
        and result["lost"] == 0
        and result["unclear_failures"] == 0
        and not duplicates
        and result["results_match_fault_free"] is not False
        and not undetected
        and not chaos["left_in_force"]
    )
    return result


def _by_kind(faults: list[FaultOutcome]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for f in faults:
        row = out.setdefault(f.spec.kind, {})
        row[f.status] = row.get(f.status, 0) + 1
        if f.detected:
            row["detected"] = row.get("detected", 0) + 1
    return out
