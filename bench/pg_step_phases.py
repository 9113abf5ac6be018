"""Where a durable step's time goes on PostgreSQL: a histogram of its phases.

Runs the like-for-like peer workload of ``bench/_peers.py`` (a warm-up task, then
``TASKS`` tasks of ``STEPS`` steps, each step's result a ~2 KB message) on a
``PostgresStore`` in this process, with timestamps taken at each hop of a step's
write: the step function's entry, ``Database.write`` called, the flusher's batch
start, the pooled connection in hand, each statement sent and answered, the COMMIT
answered, the connection back in the pool, and ``write`` returned. Python's garbage
collections are timed too (``gc.callbacks``), so a slow step can be told apart from
a collection that happened inside it.

The hooks wrap methods from the outside (this script only): the library runs the
same code as in production, plus one ``perf_counter_ns`` per hook.

    python bench/pg_step_phases.py [--url URL] [--json OUT]

Prints, per phase (the gap between two consecutive hooks), its count, p50, p99,
mean and share of the mean step, then the slowest steps with their phases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import pathlib
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent))

import _peers  # noqa: E402  (bench/_peers.py: the same workload as the peer runs)
import psycopg  # noqa: E402
from bench._meta import commit  # noqa: E402

from stalwart.db import _postgres  # noqa: E402
from stalwart.durable import Context, PostgresStore, Runner  # noqa: E402

Event = tuple[str, int]
EVENTS: list[Event] = []


def _mark(tag: str) -> None:
    EVENTS.append((tag, time.perf_counter_ns()))


def _hook() -> None:
    """Wrap the hops of a write with timestamps (this process only)."""
    db_cls = _postgres.PostgresDatabase
    write, commit_batch, connection = db_cls.write, db_cls._commit, db_cls._connection
    conn_cls = psycopg.AsyncConnection
    execute, conn_commit = conn_cls.execute, conn_cls.commit

    async def timed_write(self: Any, *args: Any, **kwargs: Any) -> Any:
        _mark("write")
        try:
            return await write(self, *args, **kwargs)
        finally:
            _mark("returned")

    async def timed_commit_batch(self: Any, batch: Any) -> None:
        _mark(f"batch[{len(batch)}]")
        await commit_batch(self, batch)
        _mark("resolved")

    @contextlib.asynccontextmanager
    async def timed_connection(self: Any, timeout: float) -> AsyncIterator[Any]:
        async with connection(self, timeout) as conn:
            _mark("conn")
            yield conn
            _mark("release")
        _mark("pooled")

    async def timed_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else repr(query)
        _mark("exec:" + text.split()[0].upper())
        try:
            return await execute(self, query, *args, **kwargs)
        finally:
            _mark("answered")

    async def timed_conn_commit(self: Any) -> None:
        _mark("COMMIT")
        await conn_commit(self)
        _mark("committed")

    pipe_cls = psycopg.AsyncPipeline
    sync, pipe_exit = pipe_cls.sync, pipe_cls.__aexit__

    async def timed_sync(self: Any) -> None:
        _mark("sync")
        await sync(self)
        _mark("synced")

    async def timed_pipe_exit(self: Any, *exc: Any) -> None:
        _mark("pipeline-exit")
        await pipe_exit(self, *exc)
        _mark("pipeline-left")

    pipe_cls.sync = timed_sync  # type: ignore[method-assign]
    pipe_cls.__aexit__ = timed_pipe_exit  # type: ignore[method-assign]
    db_cls.write = timed_write  # type: ignore[method-assign]
    db_cls._commit = timed_commit_batch  # type: ignore[method-assign]
    db_cls._connection = timed_connection  # type: ignore[method-assign,assignment]
    conn_cls.execute = timed_execute  # type: ignore[method-assign,assignment]
    conn_cls.commit = timed_conn_commit  # type: ignore[method-assign]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        _mark(f"gc{info['generation']}:{phase}")

    gc.callbacks.append(on_gc)


async def _workload(url: str) -> None:
    async def workflow(ctx: Context, n: Any) -> Any:
        for i in range(n):
            await ctx.step("turn", step, i)
        return n

    def step(i: int) -> dict[str, Any]:
        _mark("STEP")
        return _peers._message(i)

    async with PostgresStore(url, durability="full") as store:
        runner = Runner(store)
        for t in range(_peers.TASKS + 1):
            _mark(f"TASK{t}")
            await runner.run(await runner.submit("bench", _peers.STEPS), workflow)


def _steps(events: list[Event]) -> list[list[Event]]:
    """Each timed step: the events from one step entry to the next (warm-up task and
    each task's first step dropped, as in ``_peers``)."""
    tasks: list[list[Event]] = []
    for tag, ns in events:
        if tag.startswith("TASK"):
            tasks.append([])
        elif tasks:
            tasks[-1].append((tag, ns))
    out: list[list[Event]] = []
    for task in tasks[1:]:
        starts = [i for i, (tag, _) in enumerate(task) if tag == "STEP"]
        for a, b in itertools.pairwise(starts):
            out.append(task[a : b + 1])
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(events: list[Event]) -> dict[str, Any]:
    steps = _steps(events)
    totals = [(s[-1][1] - s[0][1]) / 1000 for s in steps]
    phases: dict[str, list[float]] = defaultdict(list)
    for s in steps:
        seen: dict[str, float] = defaultdict(float)
        for (a, ta), (b, tb) in itertools.pairwise(s):
            seen[f"{a} -> {b}"] += (tb - ta) / 1000
        for name, us in seen.items():
            phases[name].append(us)
    mean_total = statistics.fmean(totals)
    table = {
        name: {
            "n": len(v),
            "p50_us": round(_pct(v, 0.5), 1),
            "p99_us": round(_pct(v, 0.99), 1),
            "mean_us": round(statistics.fmean(v), 1),
            "share_of_mean": round(sum(v) / len(steps) / mean_total, 3),
        }
        for name, v in sorted(phases.items(), key=lambda kv: -sum(kv[1]))
    }
    slow = sorted(range(len(steps)), key=lambda i: -totals[i])[:10]
    slowest = [
        {
            "total_us": round(totals[i], 1),
            "phases": [
                f"{a}->{b} {round((tb - ta) / 1000)}"
                for (a, ta), (b, tb) in itertools.pairwise(steps[i])
            ],
        }
        for i in slow
    ]
    return {
        "steps": len(steps),
        "step_p50_us": round(_pct(totals, 0.5), 1),
        "step_p99_us": round(_pct(totals, 0.99), 1),
        "step_mean_us": round(mean_total, 1),
        "phases": table,
        "slowest": slowest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=None, help="a database to use (default: a fresh one)")
    parser.add_argument("--json", default=None, help="write the report here too")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    _hook()
    if args.url:
        asyncio.run(_workload(args.url))
    else:
        name = f"stalwart_phases_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_peers.PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            asyncio.run(_workload(_peers.PG_ADMIN.rsplit("/", 1)[0] + "/" + name))
        finally:
            with psycopg.connect(_peers.PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    out = report(EVENTS) | {
        "meta": {
            "commit": commit(),
            "load_1m_start": load_start,
            "load_1m_end": os.getloadavg()[0],
        }
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
