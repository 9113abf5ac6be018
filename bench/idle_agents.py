"""What idle agent processes cost: CPU per second of each, and of the node for them.

Starts ``--sessions`` (40) ``ProbeAgent`` sessions under a dynamic supervisor on the
runtime's default settings, lets them settle, then reads the CPU time (user + system,
from ``/proc`` through psutil) of every session process and of the node's process
over ``--seconds`` (30) with nothing sent to them. An idle process beats, pulses and
ships metrics at a fifth of the busy pace (docs/runtime.md), so this is the floor a
thousand idle sessions put on a machine.

Writes the ``idle`` key of ``bench/results/sessions.json`` (other keys kept):
``child_cpu_ms_per_s`` (mean over the sessions, and max), ``node_cpu_ms_per_s_per_session``,
and the machine's load average, since these are CPU figures on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import time
from typing import Any

import psutil

from stalwart import ChildSpec, RuntimeSettings, SupervisorSpec
from stalwart.observe import EventBus
from stalwart.runtime import DynamicSupervisorSpec, Runtime
from stalwart.testing import ProbeAgent

RESULTS = pathlib.Path(__file__).parent / "results" / "sessions.json"


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


async def run(sessions: int, seconds: float) -> dict[str, Any]:
    dynamic = DynamicSupervisorSpec(
        "sessions", ChildSpec("session", ProbeAgent, shutdown=10.0), max_children=sessions
    )
    rt = Runtime(
        SupervisorSpec("root", [dynamic]),
        RuntimeSettings(),
        events=EventBus(log=False),
        preload=["stalwart.testing"],
    )
    await rt.start()
    try:
        dyn = rt.dynamic_supervisor("sessions")
        for i in range(sessions):
            await dyn.start_instance(f"s{i:04d}")
            await dyn.call(f"s{i:04d}", {"op": "echo", "value": i}, timeout=30)
        await asyncio.sleep(3)  # settle: each session goes idle after its one call
        procs = [psutil.Process(c.pid) for c in dyn.which_children() if c.pid is not None]
        node = psutil.Process()
        before = [_cpu(p) for p in procs]
        node_before, t0 = _cpu(node), time.monotonic()
        await asyncio.sleep(seconds)  # the measured window: nothing is sent
        after = [_cpu(p) for p in procs]
        node_after, elapsed = _cpu(node), time.monotonic() - t0
    finally:
        await rt.stop()
    per = [(b - a) / elapsed * 1000 for a, b in zip(before, after, strict=True)]
    return {
        "sessions": len(procs),
        "seconds": round(elapsed, 1),
        "child_cpu_ms_per_s_mean": round(sum(per) / len(per), 3),
        "child_cpu_ms_per_s_max": round(max(per), 3),
        "node_cpu_ms_per_s_per_session": round(
            (node_after - node_before) / elapsed * 1000 / len(procs), 4
        ),
        "meta": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "statistic": "CPU time (user+system) over the window, per second of wall time",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="10 s window")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    result = asyncio.run(run(args.sessions, 10.0 if args.quick else args.seconds))
    print(json.dumps(result, indent=2))
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data["idle"] = result
    args.out.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
