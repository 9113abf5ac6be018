"""The load run: the average rate, then 1x, 2x and 3x it, open loop.

The *average rate* is ``rate`` when given (the production average, from your
metrics); otherwise it is measured: a closed batch of ``calibrate`` tasks is
sent at once and the node's throughput on it (tasks finished per second, from
the first task stored to the last finished, by the store's clock; the faster of
two bursts) is its capacity; the average rate is ``capacity * base_fraction`` (default 0.5,
so 2x is about the capacity and 3x is 1.5 times it: an overload).

Each level sends Poisson arrivals for ``duration`` seconds and then drains
(every task followed to its end, at most ``drain`` seconds) before the next
level, so a backlog does not leak into the next level's latencies. Per level
the result shows latency percentiles (store ``finished_at - created_at``),
error and rejection rates, the deepest queue (submitted but not finished), and
the degradations that engaged: queueing (accepted tasks waited for an
agent: seen unclaimed, a queue deeper than its concurrency, or shedding),
model fallbacks (from the tasks' usage), shedding (submissions refused with
:class:`~stalwart.errors.Overloaded` at the admission limit,
``TargetConfig.max_pending``), and whether the node stayed up. A level *holds*
when no task is lost, none failed, nothing was refused except by that shedding,
the node stayed ready, and p99 stayed within ``latency_bound`` when one is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from stalwart.chaos._arrivals import RemoteArrivals, TaskApi
from stalwart.chaos._driver import Driver
from stalwart.chaos._http_tasks import HttpTasks
from stalwart.chaos._reference import compare_with_reference
from stalwart.chaos._target import (
    Target,
    TargetConfig,
    load_inputs,
    run_target,
    workload_failed,
    workload_ref,
)
from stalwart.durable import TaskRecord
from stalwart.errors import ConfigError
from stalwart.server import ObservabilityService, ServerSettings

__all__ = ["LoadConfig", "run_load"]


@dataclasses.dataclass(frozen=True, slots=True)
class LoadConfig:
    """A load run's settings (the CLI's options, with the same defaults)."""

    target: TargetConfig
    rate: float | None = None
    levels: tuple[float, ...] = (1.0, 2.0, 3.0)
    duration: float = 30.0
    calibrate: int = 60
    base_fraction: float = 0.5
    drain: float = 120.0
    max_tasks: int = 20_000
    latency_bound: float | None = None
    reference_sample: int = 200
    api: Literal["http", "inprocess"] = "http"
    """How tasks reach the node: ``http``, its own HTTP task API (``POST``/``GET
    /v1/tasks``, as users reach it: shedding is a 429), or ``inprocess``, the node's
    :class:`~stalwart.node.Tasks` called directly (no HTTP in the measurement)."""

    def __post_init__(self) -> None:
        if self.api not in ("http", "inprocess"):
            raise ConfigError(f"load api must be 'http' or 'inprocess', got {self.api!r}")


class _SubmitOverHttp:
    """Submissions through the HTTP API, lookups straight from the node's store."""

    def __init__(self, http: HttpTasks, local: TaskApi) -> None:
        self.http, self.local = http, local

    async def submit(
        self, agent: str, task_input: Any, *, task_id: str | None = None, seed: int | None = None
    ) -> str:
        return await self.http.submit(agent, task_input, task_id=task_id, seed=seed)

    async def get(self, task_id: str) -> TaskRecord | None:
        return await self.local.get(task_id)


@contextlib.asynccontextmanager
async def task_api(
    t: Target, api: str, inputs_ref: str
) -> AsyncIterator[tuple[TaskApi, RemoteArrivals | None]]:
    """The node's task API as the load driver reaches it, and when over HTTP, where its
    open-loop arrivals come from: a child process that sends them to the node's URL
    (``_arrivals.py``: on the node's own event loop, they were late at 3x).

    The HTTP server is the node's own (the one ``stalwart run`` serves) on a free
    loopback port, with a bearer token made for the run (submitting is a mutating
    call), no log store, and a per-client request limit far above any load level:
    one load generator is one client, and the limit under test is the node's
    admission limit, not the API's abuse guard. Tasks are submitted over HTTP and
    followed in the store: polling every outstanding task over HTTP four times a
    second would be load no real client makes, and latency comes from the store's
    timestamps either way.
    """
    if api == "inprocess":
        yield t.tasks, None
        return
    token = secrets.token_urlsafe(32)
    settings = ServerSettings(
        port=0,
        api_token=token,
        log_db=None,
        rate_limit_per_s=1_000_000.0,
        rate_limit_burst=1_000_000,
    )
    server = ObservabilityService(settings)
    await server.start(t.node)
    client = HttpTasks(server.url, token=token)
    try:
        yield _SubmitOverHttp(client, t.tasks), RemoteArrivals(server.url, token, inputs_ref)
    finally:
        await client.aclose()
        await server.stop()


def _fallbacks(driver: Driver, phase: str) -> int:
    total = 0
    for e in driver.log.values():
        if e.phase == phase and isinstance(e.outcome, dict):
            usage = e.outcome.get("usage")
            if isinstance(usage, dict):
                total += int(usage.get("fallbacks", 0) or 0)
    return total


async def run_load(
    cfg: LoadConfig,
    *,
    progress: Callable[[Driver], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the average rate, load at each level; returns the JSON result."""
    tc = cfg.target
    ref = workload_ref(tc)
    inputs = load_inputs(ref, tc.seed)
    tell = say or (lambda _m: None)

    async def body(t: Target) -> dict[str, Any]:
        async with task_api(t, cfg.api, ref) as (tasks, remote):
            tell(
                f"tasks go to {remote.url}/v1/tasks"
                if remote
                else "tasks go to the node in-process"
            )
            driver = Driver(
                tasks, t.agent, inputs, seed=tc.seed, on_progress=progress, remote=remote
            )
            return await levels_run(t, driver)

    async def levels_run(t: Target, driver: Driver) -> dict[str, Any]:
        calibration: dict[str, Any] = {"source": "given", "rate": cfg.rate}
        base = cfg.rate
        if base is None:
            # Two bursts, the faster kept: the first also pays for the node's warm-up
            # (agents' first tasks, caches) and a moment of load on a shared machine,
            # and a capacity measured low makes "3x" no overload at all.
            # Each burst is timed by the store's clock (first task stored to last finished):
            # timed by the driver, its sequential submits and polling sweeps counted too,
            # and on a busy machine the node measured at half its capacity, so that "3x"
            # shed nothing.
            took = []
            for name in ("calibration-1", "calibration"):
                started = time.monotonic()
                await driver.burst(name, cfg.calibrate)
                await driver.drain(cfg.drain)
                # no fault is injected here: a burst whose tasks all failed means a workload
                # that does not run at all, and every level after would fail the same way
                problem = workload_failed(driver.summary(name), t.agent, "calibration tasks")
                if problem is not None:
                    raise ConfigError(problem)
                seen = driver.service_seconds(name)
                took.append(seen if seen else time.monotonic() - started)
            best = min(took)
            done = min(driver.summary(n)["completed"] for n in ("calibration-1", "calibration"))
            capacity = done / best if best > 0 else 0.0
            base = max(0.1, capacity * cfg.base_fraction)
            calibration = {
                "source": "measured",
                "tasks": cfg.calibrate,
                "seconds": round(best, 3),
                "seconds_per_burst": [round(x, 3) for x in took],
                "capacity_per_s": round(capacity, 3),
                "base_fraction": cfg.base_fraction,
                "rate": round(base, 3),
            }
        tell(f"average rate {base:.2f} tasks/s ({calibration['source']})")
        concurrency = max((a.max_tasks for a in t.service.app.agents if a.name == t.agent),
                          default=1)  # fmt: skip
        levels: list[dict[str, Any]] = []
        for factor in cfg.levels:
            name = f"{factor:g}x"
            rate = base * factor
            tell(f"level {name}: {rate:.2f} tasks/s for {cfg.duration:g} s")
            await driver.open_loop(name, rate, cfg.duration, max_tasks=cfg.max_tasks)
            drained = await driver.drain(cfg.drain)
            s = driver.summary(name)
            shed = s["rejections"].get("Overloaded", 0)
            # Queueing: accepted tasks had to wait for an agent -- seen waiting by the
            # driver's sweeps, or more outstanding than the agent runs at once, or
            # implied by shedding (the admission limit counts waiting tasks). The
            # sweeps are samples, so any one sign alone can miss a short burst.
            queueing = s["max_waiting"] > 0 or s["max_queue_depth"] > concurrency or shed > 0
            degradations = {
                "queueing": queueing,
                "model_fallbacks": _fallbacks(driver, name),
                "shed_overloaded": shed,
            }
            p99 = s["latency_s"]["p99"]
            within = cfg.latency_bound is None or (p99 is not None and p99 <= cfg.latency_bound)
            errors = s["rejected"] - shed  # refusals other than the configured shedding
            # a level that sent nothing (a rate too low for its duration) showed nothing
            holds = (
                s["arrivals"] > 0
                and s["lost"] == 0
                and s["failed"] == 0
                and not errors
                and t.node.ready
                and within
            )
            levels.append(
                {
                    "level": name,
                    "factor": factor,
                    "rate": round(rate, 3),
                    **s,
                    # informational: a short level's Poisson draw moves it too; whether
                    # the generator kept its schedule is send_lag_s
                    "offered_share": round(s["offered_rate"] / rate, 3)
                    if s["offered_rate"] and rate > 0
                    else None,
                    "drain_s": round(drained, 3),
                    "node_ready": t.node.ready,
                    "degradations": degradations,
                    "latency_within_bound": within,
                    "max_pending": tc.max_pending,
                    "holds": holds,
                }
            )
        return {
            "agent": t.agent,
            "calibration": calibration,
            "levels": levels,
            "log": driver.log,
            "summary": driver.summary(),
            "side_effects": t.side_effects(),
            "concurrency": concurrency,
        }

    run = await run_target(tc, body)
    compared = await compare_with_reference(
        tc,
        inputs,
        {k: v for k, v in run["log"].items() if v.phase != "calibration"},
        sample=cfg.reference_sample,
        drain=cfg.drain,
    )
    s = run["summary"]
    effects = run["side_effects"]
    duplicates = sum(effects["duplicates"].values()) if effects else None
    result: dict[str, Any] = {
        "command": "load",
        "app": tc.app,
        "api": cfg.api,
        "seed": tc.seed,
        "calibration": run["calibration"],
        "agent_concurrency": run["concurrency"],
        **{k: s[k] for k in ("submitted", "completed", "failed", "lost", "rejected")},
        "duplicate_side_effects": duplicates,
        "results_match_fault_free": compared["results_match_fault_free"],
        "compared_with_fault_free": compared["compared"],
        "reference_unfinished": compared["reference_unfinished"],
        "mismatches": compared["mismatches"],
        "reference": compared["reference"],
        "latency_s": s["latency_s"],
        "levels": run["levels"],
        "faults": [],
    }
    # with a given --rate there is no calibration: the levels' tasks (no fault) tell
    result["not_run"] = workload_failed(s, run["agent"], "tasks")
    result["passed"] = bool(
        result["not_run"] is None
        and all(level["holds"] for level in run["levels"])
        and s["lost"] == 0
        and not duplicates
        and compared["results_match_fault_free"]
    )
    return result
