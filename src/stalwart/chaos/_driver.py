"""Open-loop traffic against a node's task API, and the bookkeeping of every task.

Arrivals follow a seeded Poisson process at the requested rate and do not wait
for completions (open loop: a slow node does not slow the arrivals down, so
queueing shows up as latency instead of hiding as a lower rate). Each arrival
is its own asyncio task; the count is bounded by ``max_tasks`` and the time by
``duration``. Every submitted task is tracked until it finishes or the drain
deadline passes; one that has not finished by then is *lost*. Latency is the
store's ``finished_at - created_at`` of each task, so it does not depend on how
often the driver polls.

With a :class:`~stalwart.chaos._arrivals.RemoteArrivals` (``stalwart load`` over HTTP),
an open loop's arrivals are sent from a child process, so that the node's own load
cannot delay them (see ``_arrivals.py``); the driver follows their tasks here.
"""

from __future__ import annotations

import array
import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

from stalwart.chaos._arrivals import (
    Arrival,
    RemoteArrivals,
    Schedule,
    Started,
    TaskApi,
    run_remote,
    submit_one,
    task_id_of,
)
from stalwart.chaos._stats import percentiles
from stalwart.durable import TaskRecord
from stalwart.errors import StalwartError

__all__ = ["Driver", "Phase", "TaskLog"]

VOLATILE = frozenset(
    {"usage", "received_at", "model", "cost_usd", "fallback_from",
     "max_context_tokens", "latency_ms", "started_at", "finished_at"}
)  # fmt: skip
"""Outcome fields that legitimately differ between two runs of the same task."""

APP_FAILED = frozenset({"failed", "error"})
"""A finished task whose result has one of these ``status`` values failed by the app's
own account (e.g. an agent reporting a failed hand-over): it counts as failed."""


def comparable(value: Any, task_id: str = "") -> Any:
    """``value`` without the fields that differ between runs (timestamps, usage, model);
    the ids of sub-tasks handed over by task ``task_id`` (``<task_id>.<agent>.<step>``)
    read as ``<sub-task>``: which step handed over may differ after a resume."""
    if isinstance(value, dict):
        return {k: comparable(v, task_id) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [comparable(v, task_id) for v in value]
    if task_id and isinstance(value, str) and value.startswith(f"{task_id}."):
        return "<sub-task>"
    return value


@dataclasses.dataclass
class TaskLog:
    """What happened to one task the driver submitted."""

    id: str
    input: Any
    phase: str
    submitted_at: float
    status: str = "submitted"
    latency: float | None = None
    outcome: Any = None
    reason: str | None = None


@dataclasses.dataclass
class Phase:
    """One stretch of traffic at one rate."""

    name: str
    rate: float
    duration: float
    started: float = 0.0
    ended: float = 0.0
    offered: float = 0.0
    """Seconds over which the arrivals were sent (an open loop's window, or longer when
    the driver fell behind and sent late); 0: ``ended - started``. Not the wait for the
    node's answers that ends a phase: an open loop's offer does not depend on them."""
    send_lag: float = 0.0
    """The most an open loop's arrival was sent after its due time, seconds: how far the
    generator fell behind its schedule (a Poisson count over a short level varies by
    itself, so ``offered`` alone cannot tell a late generator from a sparse draw)."""
    arrivals: int = 0
    rejected: int = 0
    rejections: dict[str, int] = dataclasses.field(default_factory=dict)
    rejection_examples: dict[str, str] = dataclasses.field(default_factory=dict)
    """The first message of each kind of refusal: a count alone did not say which of a
    kind's causes it was (``StoreUnavailable``: the API unreachable, no answer in time,
    or a 503 from the store)."""
    max_queue: int = 0
    max_waiting: int = 0  # most tasks seen accepted but not yet claimed by an agent
    queue_samples: list[int] = dataclasses.field(default_factory=list)
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    latencies: array.array[float] = dataclasses.field(default_factory=lambda: array.array("d"))
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    unclear: int = 0
    # the store's clock: the earliest task created and the latest finished, so a closed
    # batch's throughput is the node's own, not the driver's polling (which adds up to
    # a sweep's length at the end, and more on a busy machine)
    first_created: float | None = None
    last_finished: float | None = None


class Driver:
    """Submits inputs to one agent of a node and follows every task to its end."""

    def __init__(
        self,
        tasks: TaskApi,
        agent: str,
        inputs: Callable[[int], Any],
        *,
        seed: int = 1,
        submit_timeout: float = 15.0,
        on_progress: Callable[[Driver], None] | None = None,
        keep: Callable[[str], bool] | None = None,
        remote: RemoteArrivals | None = None,
    ) -> None:
        """``inputs(i)`` is the i-th task input; task ``i`` has the id ``t{i:06d}``.

        ``keep(task_id)`` says whether a finished task stays in :attr:`log` (default:
        all do); the others only count in their phase's totals, which keeps a long
        soak's bookkeeping from growing with the number of tasks. ``remote``: send open
        loops' arrivals from a child process (see the module docstring).
        """
        self.tasks = tasks
        self.agent = agent
        self.inputs = inputs
        self.seed = seed
        self.submit_timeout = submit_timeout
        self.on_progress = on_progress
        self.log: dict[str, TaskLog] = {}
        self.outstanding: set[str] = set()
        self.phases: list[Phase] = []
        self.keep = keep
        self.finished = 0
        self._by_name: dict[str, Phase] = {}
        self._count = 0
        self._rng = random.Random(seed)
        self.remote = remote

    # -- arrivals --------------------------------------------------------------------------------
    async def _submit(self, i: int, phase: Phase) -> None:
        arrival = await submit_one(
            self.tasks, self.agent, self.inputs(i), i, seed=self.seed, timeout=self.submit_timeout
        )
        self._answered(arrival, phase)

    def _answered(self, arrival: Arrival, phase: Phase) -> None:
        """Count the node's answer to one submission."""
        if not arrival.accepted:
            # not accepted: the node said so, or did not answer and does not hold it
            phase.rejected += 1
            phase.rejections[arrival.reason] = phase.rejections.get(arrival.reason, 0) + 1
            phase.rejection_examples.setdefault(arrival.reason, arrival.message)
            return
        task_id = task_id_of(arrival.i)
        self.log[task_id] = TaskLog(task_id, self.inputs(arrival.i), phase.name, arrival.at)
        self.outstanding.add(task_id)
        phase.submitted += 1

    async def open_loop(self, name: str, rate: float, duration: float, *, max_tasks: int) -> Phase:
        """Poisson arrivals at ``rate``/s for ``duration`` s (at most ``max_tasks``)."""
        phase = Phase(name, rate, duration, started=time.monotonic())
        self.phases.append(phase)
        self._by_name[name] = phase
        if self.remote is not None:
            await self._open_loop_remote(self.remote, phase, max_tasks)
            return phase
        schedule = Schedule(self._rng, rate, duration, max_tasks, phase.started)
        submits: list[asyncio.Task[None]] = []
        poller = asyncio.ensure_future(self._poll_until(schedule.end, phase))
        try:
            async for _ in schedule.due():
                submits.append(asyncio.ensure_future(self._submit(self._count, phase)))
                self._count += 1
                phase.arrivals += 1
            phase.offered = schedule.offered()
            await asyncio.sleep(max(0.0, schedule.end - time.monotonic()))
            async with asyncio.timeout(self.submit_timeout + 1):
                await asyncio.gather(*submits)
        finally:
            phase.send_lag = schedule.lag  # however the phase ended
            for s in submits:
                s.cancel()
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        phase.ended = time.monotonic()
        return phase

    async def _open_loop_remote(self, remote: RemoteArrivals, phase: Phase, max_tasks: int) -> None:
        """:meth:`open_loop` with the arrivals sent by a child process; the sweeps that
        follow their tasks run here from the first arrival to the phase's end."""
        first = self._count
        self._count += max_tasks  # the child numbers its arrivals from ``first``
        poller: list[asyncio.Future[None]] = []  # as open_loop's: ends with the phase

        def on_event(event: Started | Arrival) -> None:
            if isinstance(event, Started):
                phase.started = event.at
                end = event.at + phase.duration
                poller.append(asyncio.ensure_future(self._poll_until(end, phase)))
            else:
                phase.arrivals += 1
                self._answered(event, phase)

        try:
            finished = await run_remote(
                remote,
                agent=self.agent,
                seed=self.seed,
                rng_seed=self._rng.getrandbits(63),
                rate=phase.rate,
                duration=phase.duration,
                max_tasks=max_tasks,
                first=first,
                submit_timeout=self.submit_timeout,
                on_event=on_event,
            )
        finally:
            for p in poller:
                p.cancel()
            await asyncio.gather(*poller, return_exceptions=True)
        self._count = first + finished.arrivals
        phase.offered = finished.offered
        phase.send_lag = finished.lag
        phase.ended = time.monotonic()

    async def burst(self, name: str, count: int, *, concurrency: int = 8) -> Phase:
        """Submit ``count`` tasks at once (a closed batch, as the calibration sends),
        ``concurrency`` submissions in flight: one after another, a busy node's answer
        time (tens of ms) bounded the batch, not its agents."""
        phase = Phase(name, 0.0, 0.0, started=time.monotonic())
        self.phases.append(phase)
        self._by_name[name] = phase
        first = self._count
        self._count += count
        phase.arrivals += count
        queue = iter(range(first, first + count))

        async def submitter() -> None:
            for i in queue:  # shared: each index is taken by one submitter
                await self._submit(i, phase)

        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, min(concurrency, count))):
                tg.create_task(submitter())
        phase.ended = time.monotonic()
        return phase

    async def replay(self, name: str, indices: list[int]) -> Phase:
        """Submit the tasks with these indices (same ids, inputs, seed) at once."""
        phase = Phase(name, 0.0, 0.0, started=time.monotonic())
        self.phases.append(phase)
        self._by_name[name] = phase
        for i in indices:
            await self._submit(i, phase)
            phase.arrivals += 1
        phase.ended = time.monotonic()
        return phase

    # -- completions ----------------------------------------------------------------------------
    def _record(self, task: TaskRecord) -> None:
        entry = self.log[task.id]
        entry.status = task.status
        entry.outcome = task.outcome
        reported = task.outcome.get("status") if isinstance(task.outcome, dict) else None
        if task.status == "succeeded" and reported in APP_FAILED:
            # the task ran to its end but its result says it failed (e.g. a sub-task the
            # app handed over failed): a failure, with the app's words as the reason
            entry.status = "failed"
        if task.finished_at is not None:
            entry.latency = max(0.0, task.finished_at - task.created_at)
        phase = self._by_name[entry.phase]
        if phase.first_created is None or task.created_at < phase.first_created:
            phase.first_created = task.created_at
        if task.finished_at is not None and (
            phase.last_finished is None or task.finished_at > phase.last_finished
        ):
            phase.last_finished = task.finished_at
        if entry.status == "succeeded":
            phase.completed += 1
            if entry.latency is not None:
                phase.latencies.append(entry.latency)
        else:
            out = task.outcome if isinstance(task.outcome, dict) else {}
            if task.status == "succeeded":  # failed by the app's own account
                detail = out.get("reason") or out.get("error") or out.get("answer") or ""
                entry.reason = f"AppReportedFailure: status {reported!r} {detail}".strip()
            else:
                entry.reason = f"{out.get('type', '?')}: {out.get('message', '')}".strip()
            phase.failed += 1
            key = entry.reason[:300] if entry.reason and entry.reason != "?:" else "no reason"
            phase.failures[key] = phase.failures.get(key, 0) + 1
            phase.unclear += key == "no reason"
        self.outstanding.discard(task.id)
        self.finished += 1
        if self.keep is not None and not self.keep(task.id):
            del self.log[task.id]

    async def sweep(self) -> int:
        """Look up every outstanding task once; returns how many still wait for an agent."""
        waiting = 0
        for task_id in list(self.outstanding):
            try:
                task = await self.tasks.get(task_id)
            except StalwartError:
                return waiting  # the store is unavailable for now: next sweep
            if task is not None and task.finished:
                self._record(task)
            elif task is not None and task.status == "pending":
                waiting += 1
        return waiting

    async def _poll_until(self, end: float, phase: Phase | None = None) -> None:
        while time.monotonic() < end:
            waiting = await self.sweep()
            if phase is not None:
                depth = len(self.outstanding)
                phase.queue_samples.append(depth)
                phase.max_queue = max(phase.max_queue, depth)
                phase.max_waiting = max(phase.max_waiting, waiting)
            if self.on_progress is not None:
                self.on_progress(self)
            await asyncio.sleep(0.25)

    async def drain(self, timeout: float) -> float:
        """Follow outstanding tasks until none is left or ``timeout`` passes; returns seconds."""
        started = time.monotonic()
        deadline = started + timeout
        while self.outstanding and time.monotonic() < deadline:
            await self.sweep()
            if self.on_progress is not None:
                self.on_progress(self)
            if self.outstanding:
                await asyncio.sleep(0.1)
        return time.monotonic() - started

    def service_seconds(self, phase: str) -> float | None:
        """From the first task of ``phase`` stored to its last finished, by the store's
        clock (None before any finished): how long the node took for the phase's tasks."""
        p = self._by_name[phase]
        if p.first_created is None or p.last_finished is None:
            return None
        return max(0.0, p.last_finished - p.first_created)

    # -- results ----------------------------------------------------------------------------
    def summary(self, phase: str | None = None) -> dict[str, Any]:
        """Counts and latency percentiles, for one phase or for all."""
        phases = [p for p in self.phases if phase is None or p.name == phase]
        names = {p.name for p in phases}
        lost = sorted(i for i in self.outstanding if self.log[i].phase in names)
        rejected = sum(p.rejected for p in phases)
        shed = sum(p.rejections.get("Overloaded", 0) for p in phases)
        arrivals = sum(p.arrivals for p in phases)
        failed = sum(p.failed for p in phases)
        lat = [x for p in phases for x in p.latencies]
        failures: dict[str, int] = {}
        for p in phases:
            for reason, n in p.failures.items():
                failures[reason] = failures.get(reason, 0) + n
        # the offer's own seconds: a busy node's slow answers to the last submissions
        # (waited for before a phase ends) made a 3x level's offered rate read as 1.9x
        seconds = sum(p.offered or (p.ended - p.started) for p in phases)
        return {
            "arrivals": arrivals,
            "submitted": sum(p.submitted for p in phases),
            "completed": sum(p.completed for p in phases),
            "failed": failed,
            "lost": len(lost),
            "rejected": rejected,
            "rejections": {
                k: sum(p.rejections.get(k, 0) for p in phases)
                for k in {r for p in phases for r in p.rejections}
            },
            # errors: failed tasks and refusals other than shedding at the admission limit
            "rejection_examples": {
                k: v for p in reversed(phases) for k, v in p.rejection_examples.items()
            },
            "error_rate": (failed + rejected - shed) / arrivals if arrivals else 0.0,
            "shed_rate": shed / arrivals if arrivals else 0.0,
            "offered_rate": arrivals / seconds if seconds > 0 else None,
            "send_lag_s": max((p.send_lag for p in phases), default=0.0),
            "latency_s": {**percentiles(lat), "max": max(lat) if lat else None},
            "max_queue_depth": max((p.max_queue for p in phases), default=0),
            "max_waiting": max((p.max_waiting for p in phases), default=0),
            "failures": failures,
            "lost_ids": lost[:50],
            "unclear_failures": sum(p.unclear for p in phases),
        }
