"""Like-for-like durable-step comparisons: stalwart, LangGraph and DBOS, SQLite and PostgreSQL.

Every system runs the same workload in its own fresh process (DBOS is a process-wide
singleton; a shared process would also share caches and the GIL's state):

- a warm-up task, then ``TASKS`` tasks of ``STEPS`` sequential steps each;
- each step returns a ~2 KB message (an agent's turn), and the task's state is the
  growing list of them: LangGraph keeps it in a ``messages`` channel with an ``add``
  reducer (how its own agents keep history), stalwart and DBOS journal each step's
  result (their own design: a step's record holds its result, not the whole history);
- a step's cost is the time from one step function's entry to the next one's, so the
  same thing is timed on every system: the previous step's checkpoint, the framework's
  bookkeeping, and the call into the next step. The first step of each task is dropped
  (its gap is the task's start).

Each system is configured as its own documentation recommends for durability:

- LangGraph: ``durability="sync"`` (each checkpoint written before the next step starts;
  its default ``"async"`` overlaps the write with the next step and can lose the last
  checkpoints on a crash), ``SqliteSaver`` (which sets WAL) with SQLite's default
  ``synchronous=FULL``; ``PostgresSaver`` (autocommit, ``setup()``) on PostgreSQL.
- DBOS: its SQLite system database with WAL switched on (DBOS leaves SQLite in its
  default rollback-journal mode, which costs it ~4 fsyncs per step and so would flatter
  stalwart), and its PostgreSQL system database, its production backend.
- stalwart: ``durability="full"`` (every commit fsynced) on SQLite, ``synchronous_commit``
  on for PostgreSQL.

Besides times, the counts that a noisy machine does not move: fsync + fdatasync calls per
step (counted with ``strace -f`` in a second, untimed run of the same workload; setup and
warm-up included, so a little above the steady state) for SQLite, and committed
transactions per step (``pg_stat_database.xact_commit + xact_rollback`` of the run's own
database) for PostgreSQL, where the fsyncs are the server's: ``fsyncs_per_step`` there is
the delta of ``pg_stat_wal.wal_sync`` (WAL flushes to disk) over the timed run, a
server-wide counter, so it holds any other database's flushes of the same seconds too
(run it on a quiet server). strace comes from Debian's ``strace`` package; without it the
SQLite fsyncs are not counted (the key is missing from the results, never zero).

    python bench/_peers.py SYSTEM [--url URL]   # one run; prints {"samples_us": [...], ...}
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import operator
import os
import pathlib
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypedDict

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

PG_ADMIN = os.environ.get("STALWART_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TASKS = 3
STEPS = 100
MESSAGE = "x" * 2000  # ~2 KB, an agent's turn

SYSTEMS = (
    "stalwart-sqlite",
    "langgraph-sqlite",
    "dbos-sqlite",
    "stalwart-postgres",
    "langgraph-postgres",
    "dbos-postgres",
)


class Timeline:
    """Entry times of every step; ``gaps`` are the per-step costs (first step dropped)."""

    def __init__(self) -> None:
        self.tasks: list[list[int]] = []

    def new_task(self) -> None:
        self.tasks.append([])

    def mark(self) -> None:
        self.tasks[-1].append(time.perf_counter_ns())

    def gaps_us(self, skip_tasks: int = 1) -> list[float]:
        out: list[float] = []
        for entries in self.tasks[skip_tasks:]:
            out.extend((b - a) / 1000 for a, b in itertools.pairwise(entries))
        return out


def _message(i: int) -> dict[str, Any]:
    return {"role": "assistant", "turn": i, "content": MESSAGE}


# -- stalwart ------------------------------------------------------------------------------
def run_stalwart(where: str) -> Timeline:
    from stalwart.durable import Context, Runner, store_from_url

    line = Timeline()

    def step(i: int) -> dict[str, Any]:
        line.mark()
        return _message(i)

    async def workflow(ctx: Context, n: Any) -> Any:
        for i in range(n):
            await ctx.step("turn", step, i)
        return n

    async def main() -> None:
        store = store_from_url(where, durability="full")
        await store.open()
        try:
            runner = Runner(store)
            for _ in range(TASKS + 1):
                line.new_task()
                await runner.run(await runner.submit("bench", STEPS), workflow)
        finally:
            await store.close()

    asyncio.run(main())
    return line


# -- LangGraph -----------------------------------------------------------------------------
class State(TypedDict):
    """LangGraph's state: the growing history, appended to by each step (``add`` reducer)."""

    messages: Annotated[list[dict[str, Any]], operator.add]


def _langgraph_graph(line: Timeline) -> Any:
    from langgraph.graph import END, START, StateGraph

    def node(i: int) -> Callable[[State], dict[str, Any]]:
        def turn(state: State) -> dict[str, Any]:
            line.mark()
            return {"messages": [_message(i)]}

        return turn

    graph = StateGraph(State)
    for i in range(STEPS):
        graph.add_node(f"n{i}", node(i))
    graph.add_edge(START, "n0")
    for i in range(STEPS - 1):
        graph.add_edge(f"n{i}", f"n{i + 1}")
    graph.add_edge(f"n{STEPS - 1}", END)
    return graph


def _langgraph_run(line: Timeline, checkpointer: Any) -> None:
    app = _langgraph_graph(line).compile(checkpointer=checkpointer)
    for t in range(TASKS + 1):
        line.new_task()
        config = {"recursion_limit": 10 * STEPS, "configurable": {"thread_id": f"t{t}"}}
        app.invoke({"messages": []}, config, durability="sync")


def run_langgraph_sqlite(where: str) -> Timeline:
    from langgraph.checkpoint.sqlite import SqliteSaver

    line = Timeline()
    with SqliteSaver.from_conn_string(where) as saver:
        saver.setup()
        _langgraph_run(line, saver)
    return line


def run_langgraph_postgres(where: str) -> Timeline:
    from langgraph.checkpoint.postgres import PostgresSaver

    line = Timeline()
    with PostgresSaver.from_conn_string(where) as saver:
        saver.setup()
        _langgraph_run(line, saver)
    return line


# -- DBOS ----------------------------------------------------------------------------------
def run_dbos(url: str) -> Timeline:
    import logging

    from dbos import DBOS, DBOSConfig

    logging.getLogger("dbos").setLevel(logging.WARNING)
    config: DBOSConfig = {
        "name": "stalwart-bench",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    line = Timeline()

    @DBOS.step()
    def turn(i: int) -> dict[str, Any]:
        line.mark()
        return _message(i)

    @DBOS.workflow()
    def workflow(n: int) -> int:
        for i in range(n):
            turn(i)
        return n

    DBOS.launch()
    try:
        for _ in range(TASKS + 1):
            line.new_task()
            workflow(STEPS)
    finally:
        DBOS.destroy()
    return line


def _sqlite_wal(path: pathlib.Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL").fetchall()


def run_system(system: str, url: str) -> Timeline:
    if system == "stalwart-sqlite" or system == "stalwart-postgres":
        return run_stalwart(url)
    if system == "langgraph-sqlite":
        return run_langgraph_sqlite(url)
    if system == "langgraph-postgres":
        return run_langgraph_postgres(url)
    if system in ("dbos-sqlite", "dbos-postgres"):
        return run_dbos(url)
    raise SystemExit(f"unknown system {system!r}; expected one of {', '.join(SYSTEMS)}")


# -- the parent side: one process per run, strace for fsyncs, pg_stat for transactions ---
@contextmanager
def _database(system: str) -> Iterator[tuple[str, str | None]]:
    """(url for the system, PostgreSQL database name or None)."""
    if system.endswith("-sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "bench.sqlite"
            if system == "dbos-sqlite":
                _sqlite_wal(path)  # WAL persists in the file; DBOS opens it as it is
            url = str(path) if system == "langgraph-sqlite" else f"sqlite:///{path}"
            yield url, None
        return
    import psycopg

    name = f"stalwart_peer_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name, name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_counts(dbname: str) -> tuple[int, int]:
    """(transactions of ``dbname``, the server's WAL syncs) so far."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
        wal = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    return (int(row[0]) if row else 0), (int(wal[0]) if wal else 0)


def _child(
    system: str, url: str, strace_to: pathlib.Path | None, script: pathlib.Path | None = None
) -> dict[str, Any]:
    cmd = [sys.executable, str(script or __file__), system, "--url", url]
    if strace_to is not None:
        counting = ["strace", "-f", "-qq", "-c", "-e", "trace=fsync,fdatasync"]
        cmd = [*counting, "-o", str(strace_to), *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{system} failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _fsyncs(report: pathlib.Path) -> int:
    total = 0
    for line in report.read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+(fsync|fdatasync)\s*$", line)
        if m:
            total += int(m.group(1))
    return total


def measure(system: str, script: pathlib.Path | None = None) -> dict[str, Any]:
    """Time one run of ``system`` and count its fsyncs (SQLite) or transactions (PG).

    ``script``: another checkout's ``bench/_peers.py`` to run instead of this one (a
    base commit's code, measured in the same run as this one's)."""
    steps_total = (TASKS + 1) * STEPS
    with _database(system) as (url, dbname):
        before = _pg_counts(dbname) if dbname else (0, 0)
        timed = _child(system, url, None, script)
        out: dict[str, Any] = {"samples_us": timed["samples_us"]}
        if dbname:
            time.sleep(1.5)  # backends flush their statistics at most once a second when idle
            after = _pg_counts(dbname)
            out["transactions_per_step"] = round((after[0] - before[0]) / steps_total, 2)
            out["fsyncs_per_step"] = round((after[1] - before[1]) / steps_total, 2)
    if system.endswith("-sqlite") and shutil.which("strace"):
        with _database(system) as (url, _), tempfile.TemporaryDirectory() as tmp:
            report = pathlib.Path(tmp) / "strace.txt"
            _child(system, url, report, script)
            out["fsyncs_per_step"] = round(_fsyncs(report) / steps_total, 2)
    return out


def summarize(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "n": len(ordered),
        "p50_us": pct(0.5),
        "p99_us": pct(0.99),
        "mean_us": round(statistics.fmean(ordered), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="one like-for-like run of one system")
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    line = run_system(args.system, args.url)
    print(json.dumps({"samples_us": line.gaps_us()}), flush=True)


if __name__ == "__main__":
    main()
