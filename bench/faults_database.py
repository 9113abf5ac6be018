"""Database faults, longer loops than the test suite: PostgreSQL restarts and kills under
load, concurrent starts on fresh databases, a corrupt SQLite file.

Writes the key ``database`` of ``bench/results/faults.json`` (merging: other keys of
that file, written by other fault benchmarks, are kept):

- ``postgres_restart`` / ``postgres_kill``: per fault, tasks accepted / completed /
  failed / lost / duplicated, and ``recovery_s`` (from the fault's start to the first
  task finished after it; median and max over the rounds). The workload: 4 workers
  running acquire -> journal two steps -> finish on a private server
  (``stalwart.testing._pgserver``); a kill is ``SIGKILL`` of the postmaster, the server
  started again ``down_s`` later.
- ``concurrent_start``: N rounds of two forked processes migrating one fresh database
  at the same moment; failures (must be 0).
- ``corrupt_sqlite``: the store refuses to open a file with a destroyed page (must be
  refused, file unchanged).

``--quick`` runs fewer rounds. Needs the PostgreSQL server binaries for the first two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from stalwart.durable import PostgresStore, SQLiteStore
from stalwart.errors import CorruptRecord
from stalwart.testing import postgres_database, postgres_reachable
from stalwart.testing._pgserver import (
    PostgresServer,
    fault_and_recover,
    pg_binaries,
    start_like_a_node,
    store_fault_worker,
)

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "faults.json"


async def _round(server: PostgresServer, fault: str, tasks: int, down_s: float) -> dict[str, Any]:
    store = PostgresStore(server.url, timeout=30)
    await store.open()
    try:
        prefix = f"{fault}-{time.monotonic_ns()}-"
        ids = [f"{prefix}{i:04d}" for i in range(tasks)]
        for tid in ids:
            await store.create_task("bench", {"n": tid}, task_id=tid)
        done: list[str] = []
        errors: list[str] = []
        progress = asyncio.Event()
        workers = [
            asyncio.create_task(store_fault_worker(store, f"w{i}", done, errors, progress))
            for i in range(4)
        ]
        while True:
            progress.clear()
            if len(done) >= tasks // 4:
                break
            await progress.wait()
        recovery = await fault_and_recover(server, fault, done, workers, progress, down_s=down_s)
        await asyncio.gather(*workers, return_exceptions=True)
        finished = [await store.get_task(t) for t in ids]
        completed = sum(1 for t in finished if t is not None and t.status == "succeeded")
        return {
            "accepted": tasks,
            "completed": completed,
            "failed": sum(1 for t in finished if t is not None and t.status == "failed"),
            "lost": sum(1 for t in finished if t is None or not t.finished),
            "duplicated": len(done) - len(set(done)),
            "recovery_s": round(recovery, 3),
            "errors_seen_by_callers": len(errors),
        }
    finally:
        await store.close()


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rec = [r["recovery_s"] for r in rounds]
    return {
        "rounds": len(rounds),
        **{k: sum(r[k] for r in rounds) for k in ("accepted", "completed", "failed", "lost",
                                                   "duplicated", "errors_seen_by_callers")},
        "recovery_s_median": round(statistics.median(rec), 3),
        "recovery_s_max": round(max(rec), 3),
    }  # fmt: skip


def _concurrent_starts(rounds: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    failures = 0
    for _ in range(rounds):
        with postgres_database("stalwart_bench_race") as url:
            barrier = ctx.Barrier(2)
            procs = [
                ctx.Process(target=start_like_a_node, args=(url, barrier, errors)) for _ in range(2)
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join(60)
            failures += sum(1 for p in procs if p.exitcode != 0)
    return {"rounds": rounds, "processes_per_round": 2, "failures": failures}


def _corrupt_sqlite() -> dict[str, Any]:
    folder = pathlib.Path(tempfile.mkdtemp())
    path = folder / "store.db"

    async def fill() -> None:
        async with SQLiteStore(path, durability="off") as store:
            for i in range(300):
                await store.create_task("a", {"text": "x" * 200}, task_id=f"t{i:03d}")

    asyncio.run(fill())
    data = bytearray(path.read_bytes())
    data[10 * 4096 : 11 * 4096] = b"\xa5" * 4096
    path.write_bytes(bytes(data))
    try:
        asyncio.run(SQLiteStore(path).open())
        refused, message = False, ""
    except CorruptRecord as exc:
        refused, message = True, str(exc)
    return {
        "refused": refused,
        "names_file_and_command": str(path) in message and "stalwart store recover" in message,
        "file_unchanged": path.read_bytes() == bytes(data),
    }


def _merge(section: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        current = {}
    current["database"] = section
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    tmp.replace(RESULTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 2 if args.quick else 5
    section: dict[str, Any] = {
        "run": {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "quick": args.quick,
        }
    }
    if pg_binaries() is not None:
        with PostgresServer() as server:
            for fault in ("restart", "kill"):
                down = 2.0 if fault == "kill" else 0.0
                results = [
                    asyncio.run(_round(server, fault, tasks=200, down_s=down))
                    for _ in range(rounds)
                ]
                section[f"postgres_{fault}"] = _summary(results)
    else:
        section["postgres_skipped"] = "PostgreSQL server binaries are not installed"
    if postgres_reachable():
        section["concurrent_start"] = _concurrent_starts(rounds * 4)
    section["corrupt_sqlite"] = _corrupt_sqlite()
    _merge(section)
    print(json.dumps(section, indent=2))


if __name__ == "__main__":
    main()
