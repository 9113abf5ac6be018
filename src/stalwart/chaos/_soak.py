"""The soak run: steady load for a long time, sampling what leaks, and the trend test.

Every ``interval`` seconds the sampler records, for the node process and for
each agent (by name, so a restarted agent continues its series): resident
memory, open file descriptors, threads and inet connections (psutil); and for
the node: the store's size on disk (database, WAL and shared memory files)
per finished task, and the queue depth (submitted, not finished); for each agent
also its queue depth in the store (its tasks pending or running). After the
run, the samples past ``warmup`` (a fraction of the run: start-up allocates
caches and pools, which is not a leak) are fitted with :func:`fit_trend`
against elapsed time, each metric with its :class:`Tolerance`; a metric whose
slope is significantly positive *and* whose growth over the window exceeds the
tolerance is flagged (threads only while the soak's later half still climbs: a
pool that grows lazily to its bound is not a leak; see :mod:`stalwart.chaos._stats`);
any flag fails the run, raises the :data:`GROWTH_RULE`
alert (one per growing series, evaluated by the same alert evaluator the node
uses) and emits ``soak_trend`` on the node's event bus.

``leak_mb_per_min`` is a test-only fault: the node process keeps that much
more memory every minute (touched, so it is resident), released when the run
ends. It exists to show the trend test catches a slow leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import psutil  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, Gauge

from stalwart.chaos._driver import Driver
from stalwart.chaos._reference import compare_with_reference
from stalwart.chaos._stats import Tolerance, fit_trend
from stalwart.chaos._target import (
    Target,
    TargetConfig,
    load_inputs,
    run_target,
    workload_failed,
    workload_ref,
)
from stalwart.errors import StalwartError
from stalwart.observe import AlertEvaluator, AlertRule, Threshold

__all__ = ["GROWTH_RULE", "TOLERANCES", "SoakConfig", "raise_alerts", "run_soak", "trends"]

TOLERANCES: dict[str, Tolerance] = {
    "rss_mb": Tolerance(absolute=16.0, relative=0.10),
    "fds": Tolerance(absolute=8.0),
    "threads": Tolerance(absolute=4.0, plateau=True),  # pools grow lazily to a bound
    "connections": Tolerance(absolute=4.0),
    "store_kb_per_task": Tolerance(absolute=2.0, relative=0.25),
    "queue_depth": Tolerance(absolute=20.0),
}
"""Growth allowed over the analysed window, per metric (``max(absolute, relative*mean)``)."""


GROWTH_RULE = AlertRule(
    "SoakGrowth",
    "count",
    "stalwart_soak_series_growing",
    Threshold(1, 0),
    Threshold(1, 0),
    "A soak's trend test found a leak or growth (slope > 0 with confidence, over tolerance)",
    by=("series",),
    equals=1.0,
)
"""The alert rule the trend test raises: one alert per growing series (add it, with the
``stalwart_soak_series_growing`` gauge, to a node's rules to alert from a long soak)."""


def raise_alerts(fitted: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``stalwart_soak_series_growing{series}`` from the trends and evaluate
    :data:`GROWTH_RULE` on it; returns the alerts that fired."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "stalwart_soak_series_growing",
        "1 when the soak's trend test flags the series as growing",
        ["series"],
        registry=registry,
    )
    for series, trend in fitted.items():
        gauge.labels(series=series).set(1.0 if trend["growing"] else 0.0)
    evaluator = AlertEvaluator([GROWTH_RULE], registry=registry)
    return [n.as_dict() for n in evaluator.evaluate() if n.status == "firing"]


INPUT_PERIOD = 1000
"""Soak inputs repeat with this period (task ids do not), so the generator's cache is bounded."""


@dataclasses.dataclass(frozen=True, slots=True)
class SoakConfig:
    """A soak run's settings (the CLI's options, with the same defaults)."""

    target: TargetConfig
    duration: float = 600.0
    rate: float = 5.0
    interval: float = 1.0
    warmup: float = 0.25
    drain: float = 120.0
    confidence: float = 0.95
    leak_mb_per_min: float = 0.0
    reference_sample: int = 200


def _proc_sample(pid: int) -> dict[str, float] | None:
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            return {
                "rss_mb": p.memory_info().rss / 2**20,
                "fds": float(p.num_fds()),
                "threads": float(p.num_threads()),
                "connections": float(len(_connections(p))),
            }
    except (psutil.Error, OSError):
        return None  # the process is restarting: a gap in its series


def _connections(p: psutil.Process) -> list[Any]:
    fn = getattr(p, "net_connections", None) or p.connections  # psutil < 6 names it so
    return list(fn(kind="inet"))


def _store_bytes(path: pathlib.Path | None) -> int:
    if path is None:
        return 0
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += os.stat(f"{path}{suffix}").st_size
    return total


def trends(
    samples: list[dict[str, Any]], *, warmup: float, confidence: float = 0.95
) -> dict[str, dict[str, Any]]:
    """Fit every ``process.metric`` series past the warm-up; ``{series: trend}``."""
    if not samples:
        return {}
    t_end = samples[-1]["t"]
    kept = [s for s in samples if s["t"] >= warmup * t_end]
    series: dict[str, tuple[list[float], list[float]]] = {}
    for s in kept:
        for key, value in s["values"].items():
            xs, ys = series.setdefault(key, ([], []))
            xs.append(s["t"])
            ys.append(value)
    out: dict[str, dict[str, Any]] = {}
    for key, (xs, ys) in sorted(series.items()):
        metric = key.rpartition(".")[2]
        trend = fit_trend(xs, ys, TOLERANCES.get(metric, Tolerance()), confidence=confidence)
        out[key] = trend.as_dict()
    return out


async def run_soak(
    cfg: SoakConfig,
    *,
    progress: Callable[[Driver], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Steady load, sampling; then the trend test. Returns the JSON result."""
    tc = cfg.target
    base_inputs = load_inputs(workload_ref(tc), tc.seed)

    def inputs(i: int) -> Any:
        return base_inputs(i % INPUT_PERIOD)  # a bounded set of inputs: no growth from them

    def keep(task_id: str) -> bool:
        return int(task_id[1:]) < cfg.reference_sample  # compared with the reference

    tell = say or (lambda _m: None)

    async def body(t: Target) -> dict[str, Any]:
        driver = Driver(t.tasks, t.agent, inputs, seed=tc.seed, on_progress=progress, keep=keep)
        samples: list[dict[str, Any]] = []
        leak: list[bytes] = []
        started = time.monotonic()
        leak_per_s = cfg.leak_mb_per_min * 2**20 / 60
        leaked = 0

        store = t.service.store
        assert store is not None

        async def sampler() -> None:
            # runs until cancelled when the arrivals end (bounded by the run's duration)
            nonlocal leaked
            while True:
                if leak_per_s > 0:
                    # by elapsed time, not per sample: a sampler slowed by a busy machine
                    # must not leak less per minute than the fault says
                    due = int(leak_per_s * (time.monotonic() - started)) - leaked
                    leak.append(b"\x01" * due)  # test-only fault: kept, touched memory
                    leaked += due
                values: dict[str, float] = {}
                pids = {"node": os.getpid(), **t.pids()}
                for name, pid in pids.items():
                    sample = _proc_sample(pid)
                    for metric, value in (sample or {}).items():
                        values[f"{name}.{metric}"] = value
                finished = driver.finished
                if finished > 0 and t.store_path is not None:
                    values["node.store_kb_per_task"] = _store_bytes(t.store_path) / 1024 / finished
                values["node.queue_depth"] = float(len(driver.outstanding))
                for name in t.agent_names():  # tasks stored for the agent, not yet finished
                    with contextlib.suppress(StalwartError):
                        depth = 0
                        for status in ("pending", "running"):
                            depth += len(
                                await store.list_tasks(status=status, agent=name, limit=100_000)
                            )
                        values[f"{name}.queue_depth"] = float(depth)
                samples.append({"t": round(time.monotonic() - started, 3), "values": values})
                await asyncio.sleep(cfg.interval)

        task = asyncio.ensure_future(sampler())
        try:
            tell(f"soak: {cfg.rate:g} tasks/s for {cfg.duration:g} s, sampling every "
                 f"{cfg.interval:g} s")  # fmt: skip
            await driver.open_loop("soak", cfg.rate, cfg.duration, max_tasks=10**7)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            leak.clear()
        await driver.drain(cfg.drain)
        fitted = trends(samples, warmup=cfg.warmup, confidence=cfg.confidence)
        flagged = sorted(k for k, v in fitted.items() if v["growing"])
        alerts = raise_alerts(fitted)
        if flagged:
            t.node.events.emit("soak_trend", flagged=flagged, node=t.node.id, alerts=alerts)
        return {
            "agent": t.agent,
            "log": driver.log,
            "summary": driver.summary(),
            "samples": samples,
            "trends": fitted,
            "flagged": flagged,
            "alerts": alerts,
            "side_effects": t.side_effects(),
        }

    run = await run_target(tc, body)
    kept = {k: v for k, v in run["log"].items() if keep(k)}
    compared = await compare_with_reference(tc, inputs, kept, drain=cfg.drain)
    s = run["summary"]
    effects = run["side_effects"]
    duplicates = sum(effects["duplicates"].values()) if effects else None
    result: dict[str, Any] = {
        "command": "soak",
        "app": tc.app,
        "seed": tc.seed,
        "duration_s": cfg.duration,
        "rate": cfg.rate,
        **{k: s[k] for k in ("submitted", "completed", "failed", "lost", "rejected")},
        "duplicate_side_effects": duplicates,
        "results_match_fault_free": compared["results_match_fault_free"],
        "compared_with_fault_free": compared["compared"],
        "reference_unfinished": compared["reference_unfinished"],
        "mismatches": compared["mismatches"],
        "reference": compared["reference"],
        "latency_s": s["latency_s"],
        "flagged": run["flagged"],
        "alerts": run["alerts"],
        "trends": run["trends"],
        "samples": run["samples"],
        "faults": (
            [{"kind": "leak", "mb_per_min": cfg.leak_mb_per_min, "status": "applied"}]
            if cfg.leak_mb_per_min > 0
            else []
        ),
    }
    # a soak whose tasks all failed (it injects no fault) measured a node doing nothing
    result["not_run"] = workload_failed(s, run["agent"], "soak tasks")
    result["passed"] = bool(
        result["not_run"] is None
        and not run["flagged"]
        and s["lost"] == 0
        and not duplicates
        and compared["results_match_fault_free"]
    )
    return result
