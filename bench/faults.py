"""Faults a node must survive, against a real node (issue 14, the node/runtime part).

Writes its keys into ``bench/results/faults.json`` (merged: other keys of that file,
e.g. ``database``, are kept):

- ``heartbeat``: both cores saturated by CPU hogs (one busy-looping process per core)
  for ``--hog-s`` seconds (60) while a node serves a steady trickle of ordinary tasks;
  ``false_hung_kills`` counts healthy agents killed as hung (the figure that must be 0),
  ``max_loop_lag_s`` is the largest loop lag any agent's pulse reported;
- ``poison``: per kind (block, spin, memory), a fresh node gets one poison task among
  ordinary ones: accepted / completed / failed / lost / duplicated / quarantined, the
  node's exit code, and ``recover_s`` (poison submitted -> quarantined);
- ``overload``: submissions at 5x the agent's capacity with an admission limit:
  accepted / rejected (429 over HTTP) / completed / lost, and the peak of pending tasks.
- ``disk_full``: a node whose SQLite store is on an 8 MiB tmpfs; tasks in flight when
  the disk fills, 20 submitted into the full disk, the disk freed: per round accepted /
  rejected / completed / failed / lost / duplicated / quarantined / unknown outcomes,
  ``recovery_s`` (freed -> every accepted task finished) and the node's exit code;
  ``rounds`` rounds (needs root to mount the tmpfs; recorded as skipped otherwise).
- ``node_kill``: a real ``stalwart run`` process (SQLite store) under a steady load of
  tasks submitted over HTTP (20/s; half of them held mid-task until the restart) is
  SIGKILLed 3 s in and started again at once on the same store, then 3 s more of load;
  per round accepted / completed / failed / lost / duplicated (deliveries of one
  at-most-once effect counted per idempotency key) / quarantined / unknown outcomes,
  ``ready_after_restart_s`` (start -> ``/readyz`` 200; ``first_ready_s`` the same for
  a cold first start, to compare), ``recovery_s`` (kill -> every task accepted before
  it finished), the 1-minute load average at each round's start, agent processes left
  alive by the kill, and the restarted node's exit code (SIGTERM at the end); ``rounds``
  rounds.

``--quick`` shortens the hog and the overload (for ``make bench-quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # the poison app

from stalwart import RuntimeSettings
from stalwart.errors import Overloaded
from stalwart.node import app_node
from stalwart.observe import EventBus

RESULTS = pathlib.Path(__file__).parent / "results" / "faults.json"
APP = "tests.integration.faults.poison_apps:app"


def _hog(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


async def _ready(node: Any) -> None:
    async with asyncio.timeout(60):
        while not node.ready:  # noqa: ASYNC110 -- readiness is a property, not an event
            await asyncio.sleep(0.01)


async def heartbeat(hog_s: float) -> dict[str, Any]:
    """False hang detections with every core busy (default runtime settings)."""
    events = EventBus(log=False)
    with tempfile.TemporaryDirectory() as tmp:
        node, service = app_node(APP, store=f"sqlite:///{tmp}/hb.db", events=events)
        out: dict[str, Any] = {}

        async def work() -> None:
            await _ready(node)
            tasks = service.tasks
            assert tasks is not None
            cores = os.cpu_count() or 1
            ctx = multiprocessing.get_context("spawn")
            hogs = [ctx.Process(target=_hog, args=(hog_s,)) for _ in range(cores)]
            for h in hogs:
                h.start()
            max_lag, submitted, ids = 0.0, 0, []
            end = time.monotonic() + hog_s
            while time.monotonic() < end:
                for agent in ("worker", "timed"):
                    ids.append(await tasks.submit(agent, {"kind": "work", "s": 0.02}))
                    submitted += 1
                for proc in node.runtime.host.processes():
                    if proc.pulse is not None:
                        max_lag = max(max_lag, proc.pulse.lag)
                await asyncio.sleep(0.1)
            for h in hogs:
                h.join()
            done = [await tasks.wait(t, timeout=120) for t in ids]
            out.update(
                hog_processes=cores,
                hog_s=hog_s,
                tasks_submitted=submitted,
                tasks_succeeded=sum(r.status == "succeeded" for r in done),
                false_hung_kills=sum(
                    e.fields["reason"] in ("hung", "task_timeout")
                    for e in events.recent("agent_exited")
                ),
                agent_hung_events=len(events.recent("agent_hung")),
                node_stalled_events=len(events.recent("node_stalled")),
                max_loop_lag_s=round(max_lag, 3),
                hang_threshold_s=node.runtime.settings.hang_threshold,
            )

        out["node_exit_code"] = await node.run(until=work())
        return out


async def poison(kind: str, agent: str) -> dict[str, Any]:
    events = EventBus(log=False)
    with tempfile.TemporaryDirectory() as tmp:
        node, service = app_node(
            APP,
            store=f"sqlite:///{tmp}/p.db",
            events=events,
            settings=RuntimeSettings(heartbeat_interval=0.5),
        )
        out: dict[str, Any] = {}

        async def work() -> None:
            await _ready(node)
            tasks = service.tasks
            assert tasks is not None
            started = time.monotonic()
            bad = await tasks.submit(agent, {"kind": kind})
            ok = [await tasks.submit(agent, {"kind": "work", "s": 0.05}) for _ in range(20)]
            record = await tasks.wait(bad, timeout=120)
            recover = time.monotonic() - started
            ok += [await tasks.submit(agent, {"kind": "work", "s": 0.05}) for _ in range(20)]
            done = [record] + [await tasks.wait(t, timeout=120) for t in ok]
            statuses = [r.status for r in done]
            out.update(
                accepted=len(done),
                completed=statuses.count("succeeded"),
                failed=statuses.count("failed"),
                quarantined=statuses.count("quarantined"),
                lost=len(done) - sum(r.finished for r in done),
                duplicated=0,  # each id finished once: the store holds one row per id
                kills=sum(e.fields["reason"] != "shutdown" for e in events.recent("agent_exited")),
                recover_s=round(recover, 2),
                poison_status=record.status,
            )

        out["node_exit_code"] = await node.run(until=work())
        return out


async def overload(seconds: float) -> dict[str, Any]:
    """Offer 5x the worker's capacity; admission sheds the excess (429 over HTTP)."""
    events = EventBus(log=False)
    with tempfile.TemporaryDirectory() as tmp:
        node, service = app_node(APP, store=f"sqlite:///{tmp}/o.db", events=events)
        service.max_pending = 50
        out: dict[str, Any] = {}
        task_s, slots = 0.1, 8  # the worker: max_tasks=8, each task 0.1 s -> 80 tasks/s
        capacity = slots / task_s

        async def work() -> None:
            await _ready(node)
            tasks = service.tasks
            assert tasks is not None
            accepted: list[str] = []
            rejected, peak = 0, 0
            end = time.monotonic() + seconds
            period = 1.0 / (5 * capacity)
            next_at = time.monotonic()
            while time.monotonic() < end:
                try:
                    accepted.append(await tasks.submit("worker", {"kind": "work", "s": task_s}))
                except Overloaded:
                    rejected += 1
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(accepted) % 50 == 0:
                    pending = await tasks.store.list_tasks(status="pending", limit=10_000)
                    peak = max(peak, len(pending))
            started = time.monotonic()
            done = [await tasks.wait(t, timeout=300) for t in accepted]
            out.update(
                offered_per_s=round(5 * capacity, 1),
                capacity_per_s=capacity,
                seconds=seconds,
                accepted=len(accepted),
                rejected=rejected,
                completed=sum(r.status == "succeeded" for r in done),
                failed=sum(r.status == "failed" for r in done),
                lost=sum(not r.finished for r in done),
                duplicated=sum(r.attempts > 1 for r in done),
                peak_pending=peak,
                drain_s=round(time.monotonic() - started, 2),
            )

        out["node_exit_code"] = await node.run(until=work())
        return out


def merge(keys: dict[str, Any], path: pathlib.Path = RESULTS) -> dict[str, Any]:
    """Write ``keys`` into ``path``, keeping every other key already there."""
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = {}
    current.update(keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    tmp.replace(path)
    return current


async def disk_full(rounds: int) -> dict[str, Any]:
    import tempfile

    from tests.integration.faults.disk_apps import CannotMount, disk_full_round, small_disk

    results = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with small_disk(pathlib.Path(tmp) / "disk") as disk:
                    got = await disk_full_round(disk, pathlib.Path(tmp))
            except CannotMount as exc:
                return {"skipped": str(exc)}
        got.pop("readiness_while_full")
        results.append(got)
    summary = {
        k: sum(r[k] for r in results)
        for k in ("accepted", "rejected_while_full", "completed", "failed", "lost",
                  "duplicated", "quarantined", "unknown_outcomes")
    }  # fmt: skip
    recovery = sorted(r["recovery_s"] for r in results)
    return summary | {
        "rounds": rounds,
        "recovery_s_median": recovery[len(recovery) // 2],
        "recovery_s_max": recovery[-1],
        "node_exit_codes": sorted({r["node_exit_code"] for r in results}),
        "rejection_example": next((r["rejection"] for r in results if r["rejection"]), None),
    }


async def node_kill(rounds: int) -> dict[str, Any]:
    from tests.integration.faults.node_kill import node_kill_round

    results = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(await node_kill_round(pathlib.Path(tmp)))
    summary = {
        k: sum(r[k] for r in results)
        for k in ("accepted", "accepted_before_kill", "completed", "failed", "lost",
                  "duplicated", "quarantined", "unknown_outcomes", "orphans_after_kill")
    }  # fmt: skip
    recovery = sorted(r["recovery_s"] for r in results)
    ready = sorted(r["ready_after_restart_s"] for r in results)
    first = sorted(r["first_ready_s"] for r in results)
    return summary | {
        "rounds": rounds,
        "recovery_s_median": recovery[len(recovery) // 2],
        "recovery_s_max": recovery[-1],
        "ready_after_restart_s_median": ready[len(ready) // 2],
        "ready_after_restart_s_max": ready[-1],
        "first_ready_s_median": first[len(first) // 2],
        "loadavg_1m": sorted(r["loadavg_1m"] for r in results),
        "killed_exit_codes": sorted({r["killed_exit_code"] for r in results}),
        "node_exit_codes": sorted({r["node_exit_code"] for r in results}),
        "load_per_s": 20.0,
        "lease_seconds": 3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--hog-s", type=float, default=None)
    parser.add_argument(
        "--only", choices=["heartbeat", "poison", "overload", "disk_full", "node_kill"]
    )
    args = parser.parse_args()
    hog_s = args.hog_s or (10.0 if args.quick else 60.0)
    run = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "run_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    keys: dict[str, Any] = {}
    if args.only in (None, "poison"):
        keys["poison"] = {
            kind: asyncio.run(poison(kind, agent))
            for kind, agent in (("block", "worker"), ("spin", "worker"), ("memory", "hog"))
        } | {"run": run}
    if args.only in (None, "overload"):
        keys["overload"] = asyncio.run(overload(3.0 if args.quick else 10.0)) | {"run": run}
    if args.only in (None, "disk_full"):
        keys["disk_full"] = asyncio.run(disk_full(2 if args.quick else 10)) | {"run": run}
    if args.only in (None, "node_kill"):
        keys["node_kill"] = asyncio.run(node_kill(1 if args.quick else 5)) | {"run": run}
    if args.only in (None, "heartbeat"):
        keys["heartbeat"] = asyncio.run(heartbeat(hog_s)) | {"run": run}
    merge(keys)
    print(json.dumps(keys, indent=2))
    bad = [k for k, v in keys.get("poison", {}).items() if k != "run" and v["lost"]]
    disk = keys.get("disk_full", {})
    kill = keys.get("node_kill", {})
    broken = any(part.get("lost") or part.get("duplicated") for part in (disk, kill))
    return 1 if bad or broken else 0


if __name__ == "__main__":
    sys.exit(main())
