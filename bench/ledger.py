"""What one budgeted model call costs the spend ledger as more calls are in flight.

Each model call of a budgeted agent reserves its worst case before the call (checking
every limit against settled spend plus what live reservations hold) and settles after.
This bench holds ``N`` other calls' reservations live (``N`` tasks in flight, each with
a task, an agent and a day limit: three rows each, as the helpdesk's resolver holds),
then times reserve + settle pairs of one more call, each in its own exclusive
transaction as :meth:`SpendLedger.reserve_sync` and :meth:`settle_sync` run them.

    python bench/ledger.py                   # this tree: SQLite (disk, tmpfs), PostgreSQL
    python bench/ledger.py --against ../old/src   # and another tree, interleaved rounds
    python bench/ledger.py --quick           # smoke run, results in the temp directory

Statistic: per round, the median of ``--pairs`` pairs (microseconds of wall time, one
thread, nothing else using the ledger); the figure is the median over rounds.
``sqlite_tmpfs`` keeps the file in memory (``/dev/shm``): its fsyncs cost nothing, so it
shows the SQL's own cost, which the disk's fsync latency hides and swings. With
``--against``, rounds of the two trees alternate in fresh processes and
``ratio_*`` is the median of the rounds' paired ratios (other over this tree). Results:
``bench/results/ledger.json`` (its ``node_against`` and ``slow_model_against``, whole
``bench/agent.py`` and ``bench/slow_model.py`` runs of two trees alternating, measured by
hand, are kept from run to run).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._meta import commit  # noqa: E402

IN_FLIGHT = (0, 64, 1000, 3000)


def one_round(url: str, in_flight: int, pairs: int) -> float:
    """Median microseconds of a reserve + settle pair with ``in_flight`` calls held."""
    from stalwart.guard import Budget, SpendLedger

    ledger = SpendLedger(url, holder="bench/1")
    budget = Budget(task_usd=10.0, agent_usd=1e9, day_usd=1e9, wait_s=0)
    held = [
        ledger.reserve_sync(budget, agent="resolver", task_id=f"held-{n}", amount_usd=0.001)
        for n in range(in_flight)
    ]
    times = []
    for n in range(pairs):
        t0 = time.perf_counter()
        res = ledger.reserve_sync(budget, agent="resolver", task_id=f"t-{n}", amount_usd=0.002)
        assert res is not None
        ledger.settle_sync(res, 0.001, 100)
        times.append((time.perf_counter() - t0) * 1e6)
    for res in held:
        ledger.settle_sync(res, 0.0)
    ledger.close()
    return statistics.median(times)


def _child(backend: str, in_flight: int, pairs: int) -> None:
    """One round in this process: print its figure."""
    if backend.startswith("sqlite"):
        where = "/dev/shm" if backend == "sqlite_tmpfs" else None
        with tempfile.TemporaryDirectory(prefix="stalwart-ledger-", dir=where) as tmp:
            print(json.dumps(one_round(f"sqlite:///{tmp}/l.db", in_flight, pairs)))
        return
    from stalwart.testing import postgres_database

    with postgres_database("bench_ledger") as url:
        print(json.dumps(one_round(url, in_flight, pairs)))


def _run(src: pathlib.Path, backend: str, in_flight: int, pairs: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run(
        [sys.executable, __file__, "--child", backend, str(in_flight), str(pairs)],
        env=env, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=pathlib.Path, help="another tree's src directory")
    parser.add_argument("--quick", action="store_true", help="1 round of 50 pairs (smoke run)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench/results/ledger.json")
    parser.add_argument(
        "--in-flight", type=int, nargs="+", default=list(IN_FLIGHT), help="levels to run"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]))
        return 0
    if args.quick:
        args.rounds, args.pairs = 1, 50
        if args.out == parser.get_default("out"):
            args.out = pathlib.Path(tempfile.gettempdir()) / "ledger-quick.json"
    # sqlite_tmpfs: the file in memory (/dev/shm), so its fsyncs cost nothing and the
    # figure is the SQL's own cost (the disk's fsync latency swings from run to run)
    from stalwart.testing import postgres_reachable

    backends = ["sqlite", "sqlite_tmpfs"] + (["postgres"] if postgres_reachable() else [])
    here = ROOT / "src"
    started = time.time()
    load_start = os.getloadavg()[0]
    result: dict[str, Any] = {}
    for backend in backends:
        for in_flight in args.in_flight:
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(args.rounds):
                ours.append(_run(here, backend, in_flight, args.pairs))
                if args.against is not None:
                    theirs.append(_run(args.against, backend, in_flight, args.pairs))
            row: dict[str, Any] = {"reserve_settle_us": statistics.median(ours)}
            if theirs:
                row["against_reserve_settle_us"] = statistics.median(theirs)
                row["ratio_against_over_this"] = statistics.median(
                    t / o for t, o in zip(theirs, ours, strict=True)
                )
            result.setdefault(backend, {})[str(in_flight)] = row
            print(backend, in_flight, row, flush=True)
    result["run"] = {
        "statistic": (
            "per round the median of --pairs reserve+settle pairs (wall us, one thread); "
            "median over rounds; ratio: median of the rounds' paired ratios"
        ),
        "in_flight": "other calls' reservations held live, three rows each (task, agent, day)",
        "pairs": args.pairs,
        "quick": args.quick,
        "rounds": args.rounds,
        "against": str(args.against) if args.against else None,
        "commit": commit(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "load_average_1min_at_start": round(load_start, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    # kept from the last run: the whole node's figures, measured by hand (whole
    # bench/agent.py and bench/slow_model.py runs of two trees alternating), which this
    # bench does not redo
    if args.out.exists():
        before = json.loads(args.out.read_text())
        for key in ("node_against", "slow_model_against"):
            if key in before:
                result[key] = before[key]
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
