"""LC-1, LC-2, LC-3: load at 1x/2x/3x, chaos under load, and a soak with the trend test.

Each runs the :mod:`stalwart.chaos` machinery (``run_load``, ``run_chaos``,
``run_soak``) against a node of its own: the same app reference as the verify
node, a fresh SQLite store in a temporary directory under the verify work dir
(``work/lc-1`` …), its own sim and fault proxy on free loopback ports. The
verify node keeps running beside it, untouched by its faults. Every run ends with
the fault-free reference: the same tasks on a fresh node, results compared.

Lengths are short by default so that a whole ``stalwart verify`` stays in CI
time; production wants longer runs, above all a 24 h soak. They are read from the
environment when the item runs (see :class:`LoadSettings`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from stalwart.agent import App
from stalwart.chaos import (
    KINDS,
    ChaosConfig,
    LoadConfig,
    SoakConfig,
    TargetConfig,
    run_chaos,
    run_load,
    run_soak,
)
from stalwart.chaos._chaos import planned_faults
from stalwart.chaos._plan import RestartLoad, restart_load
from stalwart.chaos._soak import GROWTH_RULE, raise_alerts
from stalwart.errors import ConfigError, GaveUp
from stalwart.guard import install_redactor
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import SEED, Target

__all__ = ["PRODUCTION_SOAK_S", "LoadSettings", "chaos_restarts", "restarts_evidence"]

PRODUCTION_SOAK_S = 24 * 3600.0
"""The soak the checklist asks for before production."""
PRODUCTION_CHAOS_S = 3600.0
"""The chaos run LC-2 counts as production length (the checklist names none; verify
asks an hour of mixed faults; ``STALWART_VERIFY_PRODUCTION_CHAOS_S`` changes it)."""
DEFAULT_P99_FLOOR_S = 2.0
DEFAULT_P99_FACTOR = 3.0
"""LC-1's default latency bound, when none is configured: each level's p99 within
max(2 s, 3x the 1x level's p99)."""
LATE_SHARE = 0.1
"""A 2x or 3x level whose generator sent an arrival later than this share of the level's
length after its due time makes LC-1 ``partial``: the generator fell behind, and the
level exercised less than its name says. (Not the share of the rate sent: over a short
level a Poisson count alone varies by more than a tenth.)"""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str, name: str) -> float:
    """``90``, ``90s``, ``10m``, ``24h``, ``1h30m`` -> seconds (ConfigError naming ``name``)."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _DURATION.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise ConfigError(
                f"{name}={text!r} is not a duration (e.g. 45, 45s, 10m, 24h)"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"{name}={text!r} must be a positive duration")
    return seconds


def _number(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    text = env.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={text!r} must be positive")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class LoadSettings:
    """How long and how hard LC-1 … LC-3 drive their nodes (defaults: CI-sized runs).

    ===============================  ========  ==========================================
    variable                         default   meaning
    ===============================  ========  ==========================================
    ``STALWART_VERIFY_LOAD_S``       ``8s``    LC-1: each level (1x, 2x, 3x)
    ``STALWART_VERIFY_LOAD_P99_S``   none      LC-1: the p99 latency every level must keep
    ``STALWART_VERIFY_CHAOS_S``      ``45s``   LC-2: the chaos run
    ``STALWART_VERIFY_CHAOS_RATE``   ``8``     LC-2: tasks per second during it
    ``STALWART_VERIFY_SOAK_S``       ``45s``   LC-3: the soak (production: ``24h``)
    ``STALWART_VERIFY_SOAK_RATE``    ``5``     LC-3: tasks per second during it
    ===============================  ========  ==========================================
    """

    load_s: float = 8.0
    calibrate: int = 40
    load_p99_s: float | None = None
    chaos_s: float = 45.0
    chaos_rate: float = 8.0
    soak_s: float = 45.0
    soak_rate: float = 5.0
    reference_sample: int = 60
    drain_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LoadSettings:
        e = os.environ if env is None else env
        base = cls()

        def duration(name: str, default: float) -> float:
            text = e.get(name)
            return parse_duration(text, name) if text and text.strip() else default

        return dataclasses.replace(
            base,
            load_s=duration("STALWART_VERIFY_LOAD_S", base.load_s),
            load_p99_s=_number(e, "STALWART_VERIFY_LOAD_P99_S", base.load_p99_s),
            chaos_s=duration("STALWART_VERIFY_CHAOS_S", base.chaos_s),
            chaos_rate=_number(e, "STALWART_VERIFY_CHAOS_RATE", base.chaos_rate) or 1.0,
            soak_s=duration("STALWART_VERIFY_SOAK_S", base.soak_s),
            soak_rate=_number(e, "STALWART_VERIFY_SOAK_RATE", base.soak_rate) or 1.0,
        )


def _settings_or_default() -> LoadSettings:
    try:
        return LoadSettings.from_env()
    except ConfigError:
        return LoadSettings()  # the item itself reports the bad variable


def _target(t: Target, item: str, *, quota_mb: int | None = None) -> TargetConfig:
    app = t.service.app
    if not app.workload:
        raise ConfigError(
            "the app names no workload (App.workload = 'module:function'): load, chaos "
            "and soak runs need task inputs"
        )
    return TargetConfig(
        app=t.app_ref,
        agent=t.entry,
        inputs=app.workload,
        seed=t.seed,
        quota_mb=quota_mb,
        parent=str(t.workdir / item.lower()),
        # as on the verify node (_target.Target._start): a CPU-starved agent is not taken
        # for a hung one; on 2 busy cores LC-2's node, at the default 0.75 s, killed its
        # agents as hung until its root supervisor (intensity 5) gave up
        hang_after_missed=4.0,
    )


def _after_run() -> None:
    # the run's node cleared the process's log redactor when it stopped; the verify
    # node still runs, and every line it writes must stay redacted
    install_redactor()


def _common(result: dict[str, Any]) -> dict[str, Any]:
    return {
        k: result.get(k)
        for k in (
            "submitted",
            "completed",
            "failed",
            "lost",
            "rejected",
            "duplicate_side_effects",
            "results_match_fault_free",
            "compared_with_fault_free",
            "reference_unfinished",
        )
    }


def _round(value: Any, digits: int = 3) -> Any:
    return round(value, digits) if isinstance(value, float) else value


# -- LC-1 ----------------------------------------------------------------------------------


def fell_behind(levels: list[dict[str, Any]], seconds: float) -> list[str]:
    """The 2x and 3x levels (of ``seconds`` each) whose load generator fell behind its
    schedule by more than :data:`LATE_SHARE` of the level, as on a busy machine, each
    with its lag: they exercised less than their names say."""
    return [
        f"{lv['level']} sent an arrival {lv['send_lag_s']:.2f} s after it was due"
        for lv in levels[1:]
        if isinstance(lv.get("send_lag_s"), int | float) and lv["send_lag_s"] > LATE_SHARE * seconds
    ]


@check(
    "LC-1",
    criterion="at 1x, 2x and 3x the measured rate: no errors beyond shedding, nothing lost, "
    "p99 latency within the bound (default: max(2 s, 3x the 1x level's p99))",
    does="measures the average rate, then loads the app at 1x, 2x and 3x",
    estimate_s=60,
    timeout=lambda: 3 * _settings_or_default().load_s + 240,
)
async def load_levels(t: Target) -> Outcome:
    s = LoadSettings.from_env()
    configured = s.load_p99_s if s.load_p99_s is not None else t.app.verify.latency_p99_s
    t.say(f"calibrating, then 1x, 2x, 3x for {s.load_s:g} s each")
    cfg = LoadConfig(
        target=_target(t, "LC-1"),
        levels=(1.0, 2.0, 3.0),
        duration=s.load_s,
        calibrate=s.calibrate,
        latency_bound=configured,
        reference_sample=s.reference_sample,
        drain=s.drain_s,
    )
    try:
        result = await run_load(cfg)
    finally:
        _after_run()
    levels = [
        {
            "level": lv["level"],
            "rate_per_s": _round(lv["rate"]),
            "offered_rate_per_s": _round(lv["offered_rate"]),
            "offered_share": lv["offered_share"],
            "send_lag_s": _round(lv["send_lag_s"]),
            "submitted": lv["submitted"],
            "completed": lv["completed"],
            "failed": lv["failed"],
            "lost": lv["lost"],
            "rejected": lv["rejected"],
            "error_rate": _round(lv["error_rate"]),
            "shed_rate": _round(lv["shed_rate"]),
            "latency_s": {k: _round(v) for k, v in lv["latency_s"].items()},
            "max_queue_depth": lv["max_queue_depth"],
            "degradations": lv["degradations"],
            "node_ready": lv["node_ready"],
            "holds": lv["holds"],
        }
        for lv in result["levels"]
    ]
    base_p99 = levels[0]["latency_s"].get("p99") if levels else None
    if configured is not None:
        bound, bound_source = configured, "configured"
    else:
        base = base_p99 if isinstance(base_p99, int | float) else 0.0
        bound = max(DEFAULT_P99_FLOOR_S, DEFAULT_P99_FACTOR * base)
        bound_source = (
            f"default: max({DEFAULT_P99_FLOOR_S:g} s, {DEFAULT_P99_FACTOR:g}x the 1x level's "
            "p99); set [verify] latency_p99_s or STALWART_VERIFY_LOAD_P99_S"
        )
    over = [
        lv["level"]
        for lv in levels
        if not isinstance(lv["latency_s"].get("p99"), int | float) or lv["latency_s"]["p99"] > bound
    ]
    evidence: dict[str, Any] = {
        "settings": {
            "seconds_per_level": s.load_s,
            "calibration_tasks": s.calibrate,
            "p99_bound_s": round(bound, 3),
            "p99_bound": bound_source,
            "admission_limit": None,
        },
        "calibration": result["calibration"],
        "levels": levels,
        **_common(result),
        "chart": {
            "kind": "bars",
            "title": "latency per load level",
            "x": [lv["level"] for lv in levels],
            "series": {q: [lv["latency_s"].get(q) for lv in levels] for q in ("p50", "p95", "p99")},
            "unit": "s",
        },
    }
    measured = (
        ", ".join(
            f"{lv['level']}: p99 {lv['latency_s'].get('p99')} s, {lv['failed']} failed, "
            f"{lv['lost']} lost"
            for lv in levels
        )
        + f" (bound {bound:.3g} s)"
    )
    short = fell_behind(levels, s.load_s)
    if result["passed"] and not over and short:
        return Outcome(
            "partial",
            evidence,
            f"the load generator fell behind ({'; '.join(short)}): the levels held, but at "
            "less than 2-3x; run verify where the load generator gets a core of its own (a "
            "less busy machine)",
            measured,
        )
    if result["passed"] and not over:
        return Outcome("complete", evidence, measured=measured)
    broken = [lv["level"] for lv in levels if not lv["holds"] or lv["level"] in over]
    return Outcome(
        "failed",
        evidence,
        (f"level(s) {', '.join(broken)} did not hold (failed, lost or refused tasks, the "
         "node down, or p99 over its bound); " if broken else "")
        + "under 2-3x load every task must complete (or be shed with a clear refusal, "
        "AppService.max_pending), once, with the fault-free result (docs/chaos.md)",
        measured,
    )  # fmt: skip


# -- LC-2 ----------------------------------------------------------------------------------

_NEEDED = {
    "process kills": ("agent_kill", "node_kill"),
    "dependency blocks": ("sim", "proxy"),
    "checkpoint corruption": ("journal_corrupt", "file_corrupt"),
}
"""What LC-2 must have injected (at least one applied fault of each group)."""


def _chaos_interval(duration: float) -> float:
    """Faults start every 2 s, or more often in a short run: two rounds of every kind."""
    span = max(1.0, duration - 5.0)  # the plan's warm-up and cool-down
    return max(0.5, min(2.0, span / (2 * len(KINDS) + 1)))


def _chaos_config(target: TargetConfig, s: LoadSettings, tool_proxies: Any = None) -> ChaosConfig:
    return ChaosConfig(
        target=target,
        duration=s.chaos_s,
        rate=s.chaos_rate,
        interval=_chaos_interval(s.chaos_s),
        drain=s.drain_s,
        peer=True,
        fit_intensity=True,  # the app's restart intensity bounds the plan's kills
        # tools in the profile's proxy mode: the plan's proxy faults land on their
        # upstreams too (the verify node beside it runs nothing meanwhile)
        tool_proxies=tool_proxies or {},
    )


def chaos_restarts(
    app: App,
    tools: Sequence[str],
    *,
    seed: int = SEED,
    settings: LoadSettings | None = None,
) -> RestartLoad:
    """The restarts LC-2's seeded chaos plan forces on its node's root supervisor within
    the app's intensity window (``app.period``), known before the run: the plan is a pure
    function of the seed, the run's length and the app (``tools``: those behind a fault
    proxy). More than ``app.intensity`` and the supervisor gives up on verify's own kill
    rate, whatever the app does."""
    s = settings or _settings_or_default()
    cfg = _chaos_config(TargetConfig(app="", seed=seed), s)
    return restart_load(planned_faults(cfg, app, tool_proxies=tools), app.period)


def restarts_evidence(load: RestartLoad, app: App) -> dict[str, Any]:
    return {
        "restarts_in_busiest_window": load.busiest,
        "window_s": load.period,
        "window_starts_at_s": load.window_start,
        "by_target": load.per_target,
        "restarting_faults": load.total,
        "app_intensity": app.intensity,
        "within_intensity": not load.exceeds(app.intensity),
    }


def intensity_fix(load: RestartLoad, app: App) -> str:
    return (
        f"LC-2's chaos plan SIGKILLs agents up to {load.busiest} times within {load.period:g} s "
        f"(agent kills, and the owners of corrupted records; the busiest window starts "
        f"{load.window_start:g} s into the run), and the app's restart intensity allows "
        f"{app.intensity} in {app.period:g} s: raise App.intensity (TOML: [supervision] "
        f"intensity) to at least {load.busiest} to let LC-2 judge the app under chaos"
    )


@check(
    "LC-2",
    criterion="under kills, dependency blocks and checkpoint corruption every task completes "
    "or fails clearly, once, with the fault-free result; corruption detected; run for the "
    "production length (STALWART_VERIFY_PRODUCTION_CHAOS_S, default 1 h) to be complete",
    does="mixes agent kills, dependency blocks and checkpoint corruption under load",
    estimate_s=90,
    timeout=lambda: 2 * _settings_or_default().chaos_s + 240,
)
async def chaos_under_load(t: Target) -> Outcome:
    s = LoadSettings.from_env()
    production_s = _number(os.environ, "STALWART_VERIFY_PRODUCTION_CHAOS_S", PRODUCTION_CHAOS_S)
    production_s = production_s or PRODUCTION_CHAOS_S
    t.say(f"{s.chaos_s:g} s of mixed faults at {s.chaos_rate:g} tasks/s")
    quota = 64 if os.geteuid() == 0 else None  # root: a tmpfs store, so disk_full applies
    proxies = {name: t.proxy(name) for name in t.proxied_tools()}
    cfg = _chaos_config(_target(t, "LC-2", quota_mb=quota), s, proxies)
    restarts = chaos_restarts(t.app, list(proxies), seed=t.seed, settings=s)
    try:
        result = await run_chaos(cfg)
    except GaveUp as exc:
        return gave_up_outcome(s, restarts, t.app, str(exc))
    finally:
        _after_run()
    by_kind: dict[str, dict[str, int]] = result["faults_by_kind"]
    applied = {k for k, v in by_kind.items() if v.get("applied", 0)}
    missing = [group for group, kinds in _NEEDED.items() if not applied & set(kinds)]
    kinds = sorted(by_kind)
    evidence: dict[str, Any] = {
        "settings": {
            "seconds": s.chaos_s,
            "rate_per_s": s.chaos_rate,
            "fault_interval_s": round(cfg.interval, 2),
            "store_quota_mb": quota,
            "tool_proxies": {name: t.proxies.describe(name) for name in t.proxied_tools()},
        },
        "planned_restarts": restarts_evidence(restarts, t.app),
        **_common(result),
        "unclear_failures": result["unclear_failures"],
        "failures": dict(list(result["failures"].items())[:5]),
        "mismatches": result["mismatches"][:3],
        "lost_ids": result["lost_ids"][:10],
        "faults_injected": len(result["faults"]),
        "faults_by_kind": by_kind,
        "corruption_undetected": result["corruption_undetected"],
        # each undetected one named: the record damaged, its task, and what the check found
        "undetected_corruptions": [f for f in result["faults"] if f.get("detected") is False][:10],
        "faults_left_in_force": result["faults_left_in_force"],
        "peer_node": result["peer_node"],
        "latency_s": {k: _round(v) for k, v in result["latency_s"].items()},
        "faults_on_tool_upstreams": [
            f for f in result["faults"] if str(f.get("target", "")).startswith("tool:")
        ][:10],
        "not_injected": missing,
        "production_length_s": production_s,
        "meets_production_length": s.chaos_s >= production_s,
        "chart": {
            "kind": "bars",
            "title": "faults injected under load",
            "x": kinds,
            "series": {
                status: [by_kind[k].get(status, 0) for k in kinds]
                for status in ("applied", "skipped", "detected")
            },
            "unit": "faults",
        },
    }
    measured = (
        f"{len(result['faults'])} faults over {s.chaos_s:g} s: {result.get('completed')} "
        f"completed, {result.get('failed')} failed, {result.get('lost')} lost, "
        f"{result.get('duplicate_side_effects')} duplicate side effects, "
        f"{result['corruption_undetected']} corruptions undetected"
    )
    if not result["passed"]:
        return Outcome(
            "failed",
            evidence,
            "under faults every task must complete or fail with a stated reason, once, with "
            "the fault-free result, and every corrupted record must be detected: see lost_ids, "
            "failures, mismatches and faults_by_kind (docs/chaos.md)",
            measured,
        )
    if missing:
        # planned but skipped (nothing of the app to apply it to: no model on the simulated
        # provider and no proxied tool for a block), or not planned in so short a run
        skipped = [
            g for g in missing if any(by_kind.get(k, {}).get("skipped", 0) for k in _NEEDED[g])
        ]
        short = [g for g in missing if g not in skipped]
        why = []
        if skipped:
            why.append(
                f"{', '.join(skipped)} planned but skipped, with nothing of the app to apply "
                "them to (faults_by_kind; a dependency block needs a model on the simulated "
                "provider or a tool behind a fault proxy)"
            )
        if short:
            why.append(
                f"the run was too short to apply {', '.join(short)}: lengthen it "
                "(STALWART_VERIFY_CHAOS_S, default 45s)"
            )
        return Outcome("partial", evidence, "; ".join(why), measured)
    if s.chaos_s < production_s:
        return Outcome(
            "partial",
            evidence,
            f"held for {s.chaos_s:g} s of chaos; production length is {production_s:g} s: "
            f"run STALWART_VERIFY_CHAOS_S={production_s:g}s before production",
            measured,
        )
    return Outcome("complete", evidence, measured=measured)


def gave_up_outcome(s: LoadSettings, restarts: RestartLoad, app: App, error: str) -> Outcome:
    """LC-2's verdict when its node's root supervisor gave up under the chaos: the app's
    failure (``failed``) when the plan's kills fit its restart intensity; ``not-run``
    when the plan alone forces more restarts in one window than the intensity allows
    (verify's kill rate, not the app, made it give up: nothing about the app was judged)."""
    evidence: dict[str, Any] = {
        "settings": {"seconds": s.chaos_s, "rate_per_s": s.chaos_rate},
        "error": error,
        "planned_restarts": restarts_evidence(restarts, app),
    }
    measured = (
        f"the node stopped under chaos: {error}; the plan forces {restarts.busiest} "
        f"restarts in {restarts.period:g} s against an intensity of {app.intensity}"
    )
    if restarts.exceeds(app.intensity):
        evidence["why"] = (
            "the root supervisor gave up on verify's own kill rate: the chaos plan forces "
            "more restarts in one intensity window than the app allows"
        )
        return Outcome("not-run", evidence, intensity_fix(restarts, app), measured)
    return Outcome(
        "failed",
        evidence,
        f"under chaos the node's root supervisor gave up although the plan's kills "
        f"({restarts.busiest} in {restarts.period:g} s) fit its restart intensity "
        f"({app.intensity}): the agents crashed or hung beyond the kills verify made; see "
        "node.log for the restart storm",
        measured,
    )


# -- LC-3 ----------------------------------------------------------------------------------


def _growth_rule(t: Target) -> dict[str, Any] | None:
    """The node's alert rule on agents' memory growth (``MemoryGrowth`` by default)."""
    rule = next(
        (
            r
            for r in t.http.rules
            if r.metric == "stalwart_agent_resident_memory_bytes" and r.kind == "delta"
        ),
        None,
    )
    if rule is None:
        return None
    return {
        "rule": rule.name,
        "warning": dataclasses.asdict(rule.warning),
        "critical": dataclasses.asdict(rule.critical),
        "window_s": rule.window_s,
    }


def _plateau(trend: dict[str, Any]) -> dict[str, Any]:
    """A plateau metric's later half (threads): its slope and interval, what it may add
    there, and ``settled`` (grew past the tolerance, then levelled off: a pool, not a leak)."""
    tail = trend.get("tail")
    if not tail:
        return {}
    return {
        "later_half": {
            "samples": tail["n"],
            "slope_per_s": _round(tail["slope"], 6),
            "ci": [_round(tail["low"], 6), _round(tail["high"], 6)],
            "growth": _round(tail["growth"]),
            "allowed": _round(tail["allowed"]),
        },
        "settled": trend["settled"],
    }


@check(
    "LC-3",
    criterion="no upward trend in memory, fds, connections or store size per unit of work, "
    "no thread count still climbing in the soak's later half; the trend alert wired; soaked "
    "for the production length (24 h) to be complete",
    does="runs a soak under steady load and fits trends to the sampled series",
    estimate_s=90,
    timeout=lambda: 1.5 * _settings_or_default().soak_s + 240,
)
async def soak(t: Target) -> Outcome:
    s = LoadSettings.from_env()
    t.say(f"soaking {s.soak_s:g} s at {s.soak_rate:g} tasks/s")
    cfg = SoakConfig(
        target=_target(t, "LC-3"),
        duration=s.soak_s,
        rate=s.soak_rate,
        interval=max(1.0, s.soak_s / 600),  # at most ~600 samples per series
        reference_sample=s.reference_sample,
        drain=s.drain_s,
    )
    try:
        result = await run_soak(cfg)
    finally:
        _after_run()
    trends = {
        series: {
            "slope_per_s": _round(tr["slope"], 6),
            "ci": [_round(tr["low"], 6), _round(tr["high"], 6)],
            "growth": _round(tr["growth"]),
            "allowed": _round(tr["allowed"]),
            "growing": tr["growing"],
            **_plateau(tr),
        }
        for series, tr in result["trends"].items()
    }
    samples = result["samples"]
    rss_series = sorted({k for smp in samples for k in smp["values"] if k.endswith(".rss_mb")})
    # the trend alert: the soak's own rule fires on a series its test flags, and the
    # node carries a growth rule for the long runs in production
    self_test = raise_alerts({"verify.probe": {"growing": True}})
    wiring = {
        "soak_rule": GROWTH_RULE.name,
        "soak_rule_fires_on_a_growing_series": any(
            a["name"] == GROWTH_RULE.name for a in self_test
        ),
        "node_rule": _growth_rule(t),
    }
    short = s.soak_s < PRODUCTION_SOAK_S
    evidence: dict[str, Any] = {
        "settings": {
            "seconds": s.soak_s,
            "rate_per_s": s.soak_rate,
            "sample_every_s": cfg.interval,
            "warmup_share": cfg.warmup,
        },
        "length": (
            f"held for the configured {s.soak_s:g} s; production needs a 24 h soak "
            "(STALWART_VERIFY_SOAK_S=24h)"
            if short
            else f"held for {s.soak_s:g} s (at least the 24 h production soak)"
        ),
        "production_length_s": PRODUCTION_SOAK_S,
        "meets_production_length": not short,
        **_common(result),
        "flagged": result["flagged"],
        "alerts": [{"name": a["name"], "labels": a["labels"]} for a in result["alerts"]],
        "trends": trends,
        "samples": len(samples),
        "trend_alert": wiring,
        "chart": {
            "kind": "lines",
            "title": "resident memory during the soak",
            "x": [smp["t"] for smp in samples],
            "series": {
                name.removesuffix(".rss_mb"): [
                    _round(smp["values"].get(name), 2) for smp in samples
                ]
                for name in rss_series
            },
            "unit": "MB",
            "x_unit": "s since start",
        },
    }
    measured = (
        f"{s.soak_s:g} s soak (production: {PRODUCTION_SOAK_S:g} s), {len(samples)} samples; "
        f"growing series: {len(result['flagged'])}"
    )
    if not result["passed"]:
        what = (
            f"growth in {', '.join(result['flagged'])}"
            if result["flagged"]
            else "lost, duplicated or changed results"
        )
        return Outcome(
            "failed",
            evidence,
            f"the soak found {what}: find what keeps memory, descriptors, threads, "
            "connections or store rows per task, then soak again (docs/chaos.md)",
            measured,
        )
    if not wiring["soak_rule_fires_on_a_growing_series"] or wiring["node_rule"] is None:
        return Outcome(
            "partial",
            evidence,
            "keep an alert rule on memory growth (the default MemoryGrowth rule) so a long "
            "run in production alerts on an upward trend (docs/observability.md)",
            measured,
        )
    if short:
        return Outcome(
            "partial",
            evidence,
            f"no growth in a {s.soak_s:g} s soak; the checklist asks 24 h before production: "
            "run STALWART_VERIFY_SOAK_S=24h",
            measured,
        )
    return Outcome("complete", evidence, measured=measured)
