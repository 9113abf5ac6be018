"""Sync tools forked from an agent whose SQLite writer commits without pause: with the
fork gate (``run_in_child`` as shipped) and without it (the fork made at any moment, as
before), interleaved in one run, so both face the same machine.

Writes ``bench/results/forking.json``: per mode, forks made, children that blocked
(no result within ``--timeout``: each one a child that inherited one of SQLite's locks
held, killed here), and the call's latency (p50/p99 ms, over the calls that returned);
the writer's commits and the process's CPU ms; date, commit and 1-minute load average at
start and end. ``docs/runtime.md`` ("Forking") cites it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import resource
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgspec

from stalwart.db import Program, SQLiteDatabase
from stalwart.runtime._forkserver import die_with_parent
from stalwart.tools._subprocess import _child, run_in_child

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench._meta import commit

RESULTS = pathlib.Path(__file__).parent / "results" / "forking.json"


def _create() -> Program[None]:
    yield ("CREATE TABLE IF NOT EXISTS churn (n INTEGER, pad TEXT)", ())


def _insert(n: int) -> Program[int]:
    res = yield (
        "INSERT INTO churn SELECT ?, hex(randomblob(64)) FROM "
        "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) "
        "SELECT x FROM c)",
        (n,),
    )
    return res.rowcount


def lookup(path: str) -> int:
    conn = sqlite3.connect(path, timeout=5)
    try:
        return int(conn.execute("SELECT 41 + 1").fetchone()[0])
    finally:
        conn.close()


async def ungated(fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float) -> Any:
    """``run_in_child`` without the fork gate (the parent-death signal kept)."""
    loop = asyncio.get_running_loop()
    parent = os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            if die_with_parent(parent):
                _child(fn, kwargs, w)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    done = loop.create_future()

    def readable() -> None:
        data = os.read(r, 65536)
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(r, readable)
    try:
        async with asyncio.timeout(timeout):
            await done
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        loop.remove_reader(r)
        os.close(r)
        os.waitpid(pid, 0)  # noqa: ASYNC222 - the child is gone or dying
    return msgspec.msgpack.decode(b"".join(chunks))["value"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(forks: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = SQLiteDatabase(pathlib.Path(tmp) / "store.db", durability="off")
        await db.open()
        await db.write(_create)
        commits = 0

        async def writer(k: int) -> None:
            nonlocal commits
            n = 0
            while True:
                await db.write(_insert, k * 1_000_000 + n)
                commits += 1
                n += 1

        path = str(pathlib.Path(tmp) / "tool.db")
        modes: dict[str, Callable[..., Any]] = {"gate": run_in_child, "no_gate": ungated}
        lat: dict[str, list[float]] = {m: [] for m in modes}
        blocked = dict.fromkeys(modes, 0)
        try:
            async with asyncio.TaskGroup() as group:
                churn = [group.create_task(writer(k)) for k in range(8)]
                for i in range(2 * forks):
                    mode = "gate" if i % 2 == 0 else "no_gate"
                    t0 = time.perf_counter()
                    try:
                        assert await modes[mode](lookup, {"path": path}, timeout) == 42
                    except TimeoutError:
                        blocked[mode] += 1
                        continue
                    lat[mode].append((time.perf_counter() - t0) * 1000)
                for task in churn:
                    task.cancel()
        finally:
            await db.close()
    return {
        mode: {
            "forks": forks,
            "blocked": blocked[mode],
            "latency_p50_ms": round(statistics.median(lat[mode]), 3),
            "latency_p99_ms": round(pct(lat[mode], 0.99), 3),
        }
        for mode in modes
    } | {"writer_commits": commits}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--forks", type=int, default=1500, help="per mode")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    commit_ = commit()
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit_,
        "load1_start": os.getloadavg()[0],
        "forks_per_mode": args.forks,
        "timeout_s": args.timeout,
    }
    started = time.perf_counter()
    result = asyncio.run(run(args.forks, args.timeout))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    meta |= {
        "load1_end": os.getloadavg()[0],
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_ms_self": round((usage.ru_utime + usage.ru_stime) * 1000),
        "cpu_ms_children": round((children.ru_utime + children.ru_stime) * 1000),
    }
    result["meta"] = meta
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
