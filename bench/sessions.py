"""Benchmark of one agent process per session under a dynamic supervisor (issue 18).

N sessions (1,000; ``--quick``: 200) under a ``DynamicSupervisorSpec`` with
``idle_timeout``, driven through the supervisor as an app would:

1. **start**: ``start_instance(key)`` for each session, one after another
   (fork from the fork server + ``init`` + ready);
2. **message**: one ``call`` to each running session;
3. **idle-stop**: time passes on the injected clock past ``idle_timeout`` and
   ``stop_idle()`` stops every session (``terminate`` runs, exit 0);
4. **resume**: one ``call`` to each stopped session, which starts it again and
   answers (start + call).

Writes ``bench/results/sessions.json``: ``start_p50_ms``/``start_p99_ms``
(step 1, per session), ``message_p50_ms``/``message_p99_ms`` (step 2),
``idle_stop_s`` (step 3, all sessions, concurrently), ``resume_p50_ms``/
``resume_p99_ms`` (step 4, per session, start + first answer),
``uss_per_idle_process_mb`` (private memory of a running session process that
is idle, mean over a sample of 50, before step 3), and
``node_bytes_per_stopped_session`` (what the node keeps per idle-stopped session
so it can resume it: growth of the node's Python heap measured by tracemalloc
over a separate pass of 100 more sessions started, messaged and idle-stopped,
divided by 100; tracemalloc is off during the timed steps, as it slows every
allocation). The machine is named in ``meta`` with its load average: these are
wall-clock figures. ``agents_killed_as_hung`` and ``restarts`` count what the
load did to the sessions during the run (a starved machine misses heartbeats).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import pathlib
import platform
import statistics
import sys
import time
import tracemalloc
from typing import Any

import psutil

from stalwart import ChildSpec, RuntimeSettings, SupervisorSpec
from stalwart.observe import EventBus
from stalwart.runtime import DynamicSupervisorSpec, Runtime
from stalwart.testing import FakeClock, ProbeAgent

RESULTS = pathlib.Path(__file__).parent / "results" / "sessions.json"
IDLE_TIMEOUT = 300.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values_ms: list[float]) -> dict[str, float]:
    return {f"{name}_p50_ms": statistics.median(values_ms), f"{name}_p99_ms": pct(values_ms, 0.99)}


async def run(sessions: int) -> dict[str, Any]:
    clock = FakeClock()
    template = ChildSpec("session", ProbeAgent, shutdown=10.0)
    dynamic = DynamicSupervisorSpec(
        "sessions",
        template,
        max_children=sessions + 100,
        idle_timeout=IDLE_TIMEOUT,
        intensity=10 * sessions,  # a loaded machine may kill a few as hung: count, go on
    )
    settings = RuntimeSettings(start_timeout=60.0)
    bus = EventBus(log=False)
    seen: collections.Counter[str] = collections.Counter()
    bus.subscribe(lambda e: seen.update([e.name]))
    rt = Runtime(
        SupervisorSpec("root", [dynamic]),
        settings,
        events=bus,
        clock=clock,
        preload=["stalwart.testing"],
    )
    await rt.start()
    try:
        dyn = rt.dynamic_supervisor("sessions")
        keys = [f"s{i:05d}" for i in range(sessions)]

        starts = []
        for key in keys:
            t0 = time.perf_counter()
            await dyn.start_instance(key)
            starts.append((time.perf_counter() - t0) * 1000)

        messages = []
        for key in keys:
            t0 = time.perf_counter()
            await dyn.call(key, {"op": "echo", "value": key}, timeout=30)
            messages.append((time.perf_counter() - t0) * 1000)

        step = max(1, sessions // 50)
        uss = []
        for child in dyn.which_children()[::step]:
            if child.pid is not None:
                uss.append(psutil.Process(child.pid).memory_full_info().uss / 2**20)

        clock.advance(IDLE_TIMEOUT)
        t0 = time.perf_counter()
        stopped = await dyn.stop_idle()
        idle_stop_s = time.perf_counter() - t0
        assert len(stopped) == sessions, f"{len(stopped)} of {sessions} stopped"
        assert dyn.count_children().active == 0

        resumes = []
        for key in keys:
            t0 = time.perf_counter()
            reply = await dyn.call(key, {"op": "echo", "value": key}, timeout=30)
            resumes.append((time.perf_counter() - t0) * 1000)
            assert reply["incarnation"] == 2, reply
        assert dyn.count_children().active == sessions
        node_rss_mb = psutil.Process().memory_info().rss / 2**20
        per_stopped = await stopped_session_bytes(dyn, clock, 100)
    finally:
        await rt.stop()
    return {
        "sessions": sessions,
        **summary("start", starts),
        **summary("message", messages),
        "idle_stop_s": idle_stop_s,
        **summary("resume", resumes),
        "uss_per_idle_process_mb": statistics.mean(uss),
        "node_bytes_per_stopped_session": per_stopped,
        "node_rss_mb_at_max": node_rss_mb,
        "agents_killed_as_hung": seen["agent_hung"],
        "restarts": seen["agent_restarted"],
    }


async def stopped_session_bytes(dyn: Any, clock: FakeClock, count: int) -> float:
    """Node heap kept per idle-stopped session (see the module docstring)."""
    clock.advance(IDLE_TIMEOUT)
    await dyn.stop_idle()  # the timed sessions stop first: room under max_children
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        await dyn.start_instance(f"m{i:05d}")
        await dyn.call(f"m{i:05d}", {"op": "echo"}, timeout=30)
    clock.advance(IDLE_TIMEOUT)
    assert len(await dyn.stop_idle()) == count
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 sessions instead of 1,000")
    parser.add_argument("--sessions", type=int, help="override the number of sessions")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    count = args.sessions or (200 if args.quick else 1000)
    started = time.perf_counter()
    result = asyncio.run(run(count))
    result["meta"] = {
        "mode": "quick" if args.quick else "full",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": os.getloadavg()[0],
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
