"""Benchmark of durable steps: per-step overhead and throughput, SQLite and PostgreSQL, vs peers.

Measures a journaled no-op step (``await ctx.step("noop", fn)``): per-step
latency (p50/p99) in one task, and journaled steps per second with 1, 8 and 64
concurrent tasks (group commit at work). In full mode, stalwart, LangGraph and
DBOS run one workload like for like, on SQLite and on PostgreSQL, each configured as
its own documentation recommends for durability (``bench/_peers.py`` says how), and
the same statistic is compared on both sides (p50/p50, mean/mean, p99/p99), beside
the fsyncs (SQLite) and transactions (PostgreSQL) each spends per step.

    python bench/durable.py            # full: more iterations + peers
    python bench/durable.py --quick    # < 60 s, no peers
    python bench/durable.py --peers-only --systems stalwart-postgres,langgraph-postgres \
        --base HEAD~1 --out /tmp/durable_pg.json   # PG only, vs a base commit

Writes bench/results/durable.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent))
import _peers  # noqa: E402  (bench/_peers.py: the like-for-like peer runs)
from bench._meta import commit  # noqa: E402

from stalwart.durable import Context, Runner, SQLiteStore, Store  # noqa: E402

PG_ADMIN = os.environ.get("STALWART_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _noop() -> None:
    return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _latency(store: Store, steps: int) -> tuple[float, float, float]:
    """p50 and p99 of one journaled no-op step (µs), and the mean over a 100-step task."""
    runner = Runner(store)
    samples: list[float] = []

    async def wf(ctx: Context, n: Any) -> Any:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            await ctx.step("noop", _noop)
            samples.append((time.perf_counter_ns() - t0) / 1000)
        return None

    # Warm-up: a running node's WAL is already in steady state (reused in place).
    await runner.run(await runner.submit("bench", 400), wf)
    samples.clear()
    await runner.run(await runner.submit("bench", steps), wf)
    p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
    per_task: list[float] = []
    for _ in range(5):
        tid = await runner.submit("bench", 100)
        t0 = time.perf_counter()
        await runner.run(tid, wf)
        per_task.append((time.perf_counter() - t0) / 100 * 1e6)
    return p50, p99, statistics.median(per_task)


async def _throughput(store: Store, tasks: int, steps: int) -> float:
    runner = Runner(store)

    async def wf(ctx: Context, n: Any) -> Any:
        for _ in range(n):
            await ctx.step("noop", _noop)
        return None

    ids = [await runner.submit("bench", steps) for _ in range(tasks)]
    t0 = time.perf_counter()
    async with asyncio.timeout(600):
        await asyncio.gather(*(runner.run(tid, wf) for tid in ids))
    return tasks * steps / (time.perf_counter() - t0)


async def _measure(store: Store, prefix: str, quick: bool, out: dict[str, Any]) -> None:
    p50, p99, per100 = await _latency(store, 500 if quick else 3000)
    out[f"{prefix}_step_p50_us"] = round(p50, 1)
    out[f"{prefix}_step_p99_us"] = round(p99, 1)
    out[f"{prefix}_step_100_mean_us"] = round(per100, 1)
    for n in (1, 8, 64):
        steps = (200 if quick else 1000) if n > 1 else (500 if quick else 2000)
        out[f"{prefix}_steps_per_s_{n}"] = round(await _throughput(store, n, steps))
    print(f"{prefix}: p50 {p50:.0f} µs, p99 {p99:.0f} µs, "
          f"{out[f'{prefix}_steps_per_s_64']} steps/s with 64 tasks", flush=True)  # fmt: skip


async def _sqlite(tmp: pathlib.Path, quick: bool, out: dict[str, Any]) -> None:
    async with SQLiteStore(tmp / "bench.db", durability="full") as store:
        await _measure(store, "sqlite", quick, out)
    async with SQLiteStore(tmp / "bench-normal.db", durability="normal") as store:
        p50, p99, _ = await _latency(store, 500 if quick else 3000)
        out["sqlite_normal_step_p50_us"] = round(p50, 1)
        out["sqlite_normal_step_p99_us"] = round(p99, 1)
        out["sqlite_normal_steps_per_s_64"] = round(
            await _throughput(store, 64, 200 if quick else 1000)
        )


async def _postgres(quick: bool, out: dict[str, Any]) -> None:
    try:
        import psycopg

        from stalwart.durable import PostgresStore

        name = f"stalwart_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        print(f"postgres: skipped ({exc})", flush=True)
        return
    try:
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        async with PostgresStore(url, pool_size=8, flushers=2) as store:
            await _measure(store, "postgres", quick, out)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- peers: like for like, each system in its own process (bench/_peers.py) -------------
def _base_tree(rev: str, into: pathlib.Path) -> pathlib.Path:
    """``rev``'s bench and src (``git archive``) under ``into``; its ``bench/_peers.py``."""
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", "--format=tar", rev, "bench", "src"],
        capture_output=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, timeout=60, check=True)
    return into / "bench" / "_peers.py"


def _compare(
    rounds: int, systems: tuple[str, ...], base: tuple[str, pathlib.Path] | None = None
) -> dict[str, Any]:
    """Every system of ``systems`` once per round, rounds interleaved (so a slow
    minute of a shared machine hits every system alike); samples pooled per system.
    ``base`` (a commit and its ``_peers.py``): each stalwart system runs on that
    commit's code too, as ``<system>@<commit>``, in the same rounds."""
    runs: dict[str, tuple[str, pathlib.Path | None]] = {s: (s, None) for s in systems}
    if base is not None:
        for s in systems:
            if s.startswith("stalwart-"):
                runs[f"{s}@{base[0]}"] = (s, base[1])
    samples: dict[str, list[float]] = {s: [] for s in runs}
    counts: dict[str, dict[str, float]] = {}
    for r in range(rounds):
        order = list(runs)
        random.Random(r).shuffle(order)
        for name in order:
            system, script = runs[name]
            try:
                got = _peers.measure(system, script)
            except Exception as exc:  # a missing peer (extra not installed) is reported, not fatal
                print(f"{name}: failed ({str(exc)[-300:]})", flush=True)
                continue
            samples[name].extend(got.pop("samples_us"))
            counts[name] = got
    summary: dict[str, Any] = {}
    for name, values in samples.items():
        if values:
            summary[name] = {**_peers.summarize(values), **counts.get(name, {})}
            print(f"{name}: {summary[name]}", flush=True)
    out: dict[str, Any] = {
        "peer_workload": f"{_peers.TASKS} tasks x {_peers.STEPS} steps per run (after a "
        f"warm-up task), each step's result a ~2 KB message, {rounds} interleaved rounds; "
        "a step's cost is the gap between consecutive step entries",
        "peer_systems": summary,
    }
    for backend in ("sqlite", "postgres"):
        ours = summary.get(f"stalwart-{backend}")
        suffix = "" if backend == "sqlite" else "_postgres"
        others = {peer: summary.get(f"{peer}-{backend}") for peer in ("langgraph", "dbos")}
        if base is not None:
            others["base"] = summary.get(f"stalwart-{backend}@{base[0]}")
        for peer, theirs in others.items():
            for stat in ("p50", "mean", "p99"):
                key = f"ratio_vs_{peer}_{stat}{suffix}"
                out[key] = (
                    round(theirs[f"{stat}_us"] / ours[f"{stat}_us"], 2) if ours and theirs else None
                )
    return out


def _kill_resume_200() -> dict[str, Any]:
    """The 200-run kill-and-resume acceptance test (SIGKILLs, real processes, HTTP service)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(HERE.parent / "tests/integration/durable/test_kill_resume.py"), "-k", "200"],
        capture_output=True, text=True, timeout=1800, check=False, cwd=HERE.parent,
        env={**os.environ, "STALWART_SLOW": "1"},
    )  # fmt: skip
    passed = proc.returncode == 0
    print(f"kill-and-resume x200: {'passed' if passed else 'FAILED'}", flush=True)
    if not passed:
        print(proc.stdout[-3000:], flush=True)
    return {"runs": 200, "passed": passed, "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="under 60 s, peers skipped")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved peer rounds")
    parser.add_argument(
        "--no-kill-resume", action="store_true", help="skip the 200-run kill-and-resume test"
    )
    parser.add_argument(
        "--systems",
        default=",".join(_peers.SYSTEMS),
        help="peer systems to compare, comma-separated (default: all)",
    )
    parser.add_argument(
        "--base",
        default=None,
        help="a commit: run the stalwart systems on its code too, in the same rounds",
    )
    parser.add_argument(
        "--peers-only",
        action="store_true",
        help="only the peer comparison (no in-process figures, no kill-and-resume)",
    )
    parser.add_argument("--out", default=str(HERE / "results" / "durable.json"))
    args = parser.parse_args()
    systems = tuple(s for s in args.systems.split(",") if s)
    unknown = sorted(set(systems) - set(_peers.SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {', '.join(_peers.SYSTEMS)}")
    started = time.perf_counter()
    out: dict[str, Any] = {"mode": "quick" if args.quick else "full", "durability": "full"}
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "load_1m_start": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    if not args.peers_only:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(_sqlite(pathlib.Path(tmp), args.quick, out))
        asyncio.run(_postgres(args.quick, out))
        out["postgres_step_p50_us"] = out.get("postgres_step_p50_us")
        out["postgres_steps_per_s_64"] = out.get("postgres_steps_per_s_64")
    if not args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            base = None
            if args.base:
                meta["base_commit"] = args.base
                base = (args.base, _base_tree(args.base, pathlib.Path(tmp)))
            out.update(_compare(args.rounds, systems, base))
    if not args.quick and not args.no_kill_resume and not args.peers_only:
        out["kill_resume"] = _kill_resume_200()
    out["targets"] = {
        "ratio_vs_langgraph_p50": 3.0,
        "ratio_vs_langgraph_mean": 3.0,
        "ratio_vs_dbos_p50": 3.0,
        "ratio_vs_langgraph_p50_postgres": 3.0,
        "ratio_vs_dbos_p50_postgres": 3.0,
        "sqlite_steps_per_s_64": 5000,
    }
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["meta"] = meta | {"load_1m_end": os.getloadavg()[0]}
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
