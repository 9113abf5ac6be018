"""Scale-out on one PostgreSQL: throughput with 1..3 nodes, failover time, fencing.

Writes ``bench/results/cluster.json``:

- ``tasks_per_s_1``, ``tasks_per_s_2`` (full mode), ``tasks_per_s_3``: helpdesk tickets
  completed per second by 1, 2, 3 node processes on this machine (sim at zero
  latency, one shared sim, all tickets submitted at once), with PostgreSQL's own
  CPU share noted;
- ``cpu_ms_per_ticket_<n>``: CPU time per ticket by component at each point -- ``node``
  (the `stalwart run` processes themselves), ``agents`` (their fork servers and agent
  processes), ``postgres`` (every server process), ``sim`` and ``driver`` (this
  process, which submits and waits) -- user+system ticks of ``/proc/<pid>/stat`` (via
  psutil) of each process tree before and after, reaped children's included (a process
  that exits mid-run keeps its time in its parent's ``cutime``/``cstime``), summed, and
  ``cpu_ms_per_ticket_by_node_<n>``: the node and agents of each node apart;
- ``failed_<n>``: tickets that did not succeed at that point (a count that fell because
  tasks failed early would say so here);
- ``pg_transactions_per_ticket_<n>``: transactions of the run's database
  (``pg_stat_database.xact_commit + xact_rollback``) per ticket, the driver's own
  polling reads taken out (target: at most 15);
- ``pg_transactions_by_shape_<n>`` (with ``--sql-log``): where those transactions come
  from -- the run's database gets ``log_statement = 'all'``, and the server log's lines
  for it are grouped into transactions (``BEGIN`` .. ``COMMIT`` per backend; a statement
  outside one is a transaction of its own) and counted per ticket by the statements they
  hold, the most frequent first;
- ``failover_p50_s``, ``failover_max_s``: from the SIGKILL of a whole node (node,
  fork server, agents) to each of its orphaned tasks being claimed by another node;
- ``stale_writes_applied``: after a node is paused (SIGSTOP) for two leases and
  resumed, tasks whose result differs from the fault-free run (a stale write that
  landed would show here) -- must be 0;
- ``duplicate_side_effects``: duplicate deliveries per idempotency key counted by the
  sim's payment and e-mail services over the whole run -- must be 0.

``--quick`` (under a minute) uses fewer tickets and skips the 2-node point.

``--against DIR`` measures only throughput, on this checkout and on another checkout's
``src`` directory (``git archive <commit> src | tar -x -C /tmp/base`` gives one), at
``--nodes`` nodes for ``--rounds`` rounds, the order flipping each round (the nodes,
their fork servers and agents import the other ``src`` through ``PYTHONPATH``; the
sim and the driver are this checkout's), and keeps the medians and their ratios
(this / base) as ``against`` in ``cluster.json``, other keys kept: a change's effect
in one run, on a machine whose load moves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import re
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import psutil
import psycopg

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._meta import commit  # noqa: E402
from examples.helpdesk.app import app as helpdesk  # noqa: E402
from examples.helpdesk.tickets import generate  # noqa: E402

from stalwart.durable import open_store  # noqa: E402
from stalwart.node import Tasks  # noqa: E402
from stalwart.testing._cluster import ClusterNode, start_node, start_sim  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "cluster.json"
CURRENT: dict[str, Any] = {}
"""The run's database name and the sim's pid, for the counters of ``throughput``."""
PG_ADMIN = os.environ.get("STALWART_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
LEASE = helpdesk.lease_seconds  # the default: failover is measured as users get it


def new_database() -> str:
    name = f"stalwart_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def url_for(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def _cpu(proc: psutil.Process, *, reaped: bool = True) -> float:
    """User+system seconds of ``proc`` (``/proc/<pid>/stat``), with its reaped children's
    unless ``reaped`` is False (a parent whose children are counted elsewhere)."""
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    own = float(t.user + t.system)
    return own + float(t.children_user + t.children_system) if reaped else own


def component_cpu(nodes: list[ClusterNode], sim_pid: int) -> dict[str, float]:
    """CPU seconds so far by component (see the module docstring). A node's reaped
    children (its fork server's, its agents') are agents' time, not the node's."""
    out = {"node": 0.0, "agents": 0.0, "postgres": postgres_cpu_seconds()}
    for node in nodes:
        root = psutil.Process(node.proc.pid)
        own = _cpu(root, reaped=False)
        agents = 0.0
        try:
            t = root.cpu_times()
            agents += float(t.children_user + t.children_system)
        except psutil.Error:
            pass
        for child in root.children(recursive=True):
            agents += _cpu(child)
        out["node"] += own
        out["agents"] += agents
        out[f"{node.name}.node"] = own  # each node apart too
        out[f"{node.name}.agents"] = agents
    sim = psutil.Process(sim_pid)
    out["sim"] = _cpu(sim) + sum(_cpu(c) for c in sim.children(recursive=True))
    out["driver"] = _cpu(psutil.Process(), reaped=False)
    return out


def transactions(name: str) -> int:
    """Transactions of database ``name`` so far: committed plus rolled back."""
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (name,),
        ).fetchone()
    return int(row[0]) if row else 0


# -- where the transactions come from: the server's statement log (--sql-log) -----------
_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[.\d]* \w+ \[(\d+)\] \S*@(\S+) (\w+):\s+(.*)$"
)
_STATEMENT = re.compile(r"^(?:statement|execute [^:]*):\s*(.*)$", re.S)


def _shape(sql: str) -> str:
    """A statement without its values: what it does to which table (for counting)."""
    text = " ".join(sql.split())
    text = re.sub(r"'(?:[^']|'')*'", "'?'", text)
    text = re.sub(r"\b\d+(?:\.\d+)?\b", "N", text)
    text = re.sub(r"SELECT [^()]*? FROM", "SELECT .. FROM", text, count=1)
    text = re.sub(
        r"\(id = \$N AND lease_token = \$N\)(?: OR \(id = \$N AND lease_token = \$N\))*",
        "(id = $N AND lease_token = $N) OR ..",
        text,
    )
    return text[:160]


def statement_transactions(log: pathlib.Path, offset: int, database: str) -> Counter[str]:
    """Transactions of ``database`` in the server log from byte ``offset`` on, by shape:
    per backend, ``BEGIN`` .. ``COMMIT``/``ROLLBACK`` is one (named by its statements'
    shapes, in order, repeats dropped), and a statement outside one is one alone."""
    with log.open("rb") as f:
        f.seek(offset)
        raw = f.read().decode("utf-8", "replace")
    entries: list[tuple[str, str]] = []  # (pid, statement)
    for line in raw.splitlines():
        m = _LOG_LINE.match(line)
        if m is None:
            if entries and line.startswith(("\t", " ")):  # a statement's next line
                pid, text = entries[-1]
                entries[-1] = (pid, text + " " + line.strip())
            continue
        pid, datname, level, message = m.groups()
        if datname != database or level != "LOG":
            continue
        found = _STATEMENT.match(message)
        if found is not None:
            entries.append((pid, found.group(1)))
    open_tx: dict[str, list[str]] = {}
    counts: Counter[str] = Counter()
    for pid, text in entries:
        word = text.strip().rstrip(";").upper()
        if word in ("BEGIN", "START TRANSACTION"):
            open_tx[pid] = []
        elif word in ("COMMIT", "ROLLBACK"):
            shapes = open_tx.pop(pid, None)
            if shapes is not None:
                counts[" | ".join(dict.fromkeys(shapes)) or "(empty)"] += 1
        elif pid in open_tx:
            open_tx[pid].append(_shape(text))
        else:
            counts[_shape(text)] += 1
    return counts


def log_offset(log: pathlib.Path | None) -> int:
    return log.stat().st_size if log is not None else 0


def postgres_cpu_seconds() -> float:
    """The server's CPU seconds so far: the postmaster's own and its reaped children's
    (backends that already exited), plus its live children's. Summing live processes
    alone loses the time of every connection closed in between (a negative delta)."""
    total = 0.0
    for proc in psutil.process_iter(["name", "ppid"]):
        if proc.info["name"] != "postgres":
            continue
        try:
            parent = psutil.Process(proc.info["ppid"]).name()
        except psutil.Error:
            continue
        if parent == "postgres":
            continue  # a backend: counted below, under its postmaster
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            total += sum(_cpu(c) for c in proc.children())
        except psutil.Error:
            pass
    return total


async def running_on(store: Any, prefix: str) -> list[Any]:
    """Tasks running under a lease of the node whose owners start with ``prefix``."""
    running = await store.list_tasks(status="running", limit=100_000)
    return [t for t in running if (t.lease_owner or "").startswith(prefix)]


async def with_cluster(n: int, sim_url: str, body: Any) -> Any:
    name = new_database()
    CURRENT["database"] = name
    if CURRENT.get("sql_log") is not None:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"ALTER DATABASE \"{name}\" SET log_statement = 'all'")
    nodes: list[ClusterNode] = []
    src = CURRENT.get("src")  # another checkout's code, for --against
    env = {"PYTHONPATH": f"{src}{os.pathsep}{ROOT}"} if src else None
    try:
        for i in range(n):
            nodes.append(
                await start_node(f"n{i}", url_for(name), sim_url, cwd=str(ROOT), extra_env=env)
            )
        store = await open_store(url_for(name))
        try:
            return await body(nodes, Tasks(None, store), store)
        finally:
            await store.close()
    finally:
        await asyncio.gather(*(node.stop() for node in nodes), return_exceptions=True)
        drop_database(name)


async def throughput(n: int, tickets: list[dict[str, Any]], sim_url: str) -> dict[str, Any]:
    async def body(nodes: list[ClusterNode], tasks: Tasks, store: Any) -> dict[str, Any]:
        sql_log: pathlib.Path | None = CURRENT.get("sql_log")
        cpu0 = component_cpu(nodes, CURRENT["sim_pid"])
        xact0 = transactions(CURRENT["database"])
        offset = log_offset(sql_log)
        started = time.perf_counter()
        ids = [await tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        # Wait with one listing every 0.25 s, not a read per task, and count those reads:
        # the transactions per ticket are the system's, not this driver's.
        reads = 0
        async with asyncio.timeout(300):
            while True:
                listed = await store.list_tasks(agent="triage", limit=100_000)
                reads += 1
                if sum(t.finished for t in listed if t.id in set(ids)) == len(ids):
                    break
                await asyncio.sleep(0.25)
        records = [r for r in listed if r.id in set(ids)]
        elapsed = time.perf_counter() - started
        cpu1 = component_cpu(nodes, CURRENT["sim_pid"])
        await asyncio.sleep(1.5)  # backends flush their statistics at most once a second
        xacts = transactions(CURRENT["database"]) - xact0 - reads
        point: dict[str, Any] = {}
        if sql_log is not None:
            shapes = statement_transactions(sql_log, offset, CURRENT["database"])
            point["pg_transactions_logged_per_ticket"] = round(sum(shapes.values()) / len(ids), 2)
            point["pg_transactions_by_shape"] = {
                k: round(v / len(ids), 3) for k, v in shapes.most_common(25)
            }
        return point | {
            "tasks_per_s": len(ids) / elapsed,
            "answers": {r.id: (r.outcome or {}).get("answer") for r in records},
            "failed": sum(r.status != "succeeded" for r in records),
            "postgres_cpu_share": (cpu1["postgres"] - cpu0["postgres"]) / elapsed,
            "cpu_ms_per_ticket": {
                k: round((cpu1[k] - cpu0[k]) * 1000 / len(ids), 2) for k in cpu0 if "." not in k
            },
            "cpu_ms_per_ticket_by_node": {
                k: round((cpu1[k] - cpu0[k]) * 1000 / len(ids), 2) for k in cpu0 if "." in k
            },
            "pg_transactions_per_ticket": round(xacts / len(ids), 2),
            "driver_reads": reads,
        }

    return await with_cluster(n, sim_url, body)  # type: ignore[no-any-return]


async def failover(tickets: list[dict[str, Any]], sim_url: str) -> dict[str, Any]:
    async def body(nodes: list[ClusterNode], tasks: Tasks, store: Any) -> dict[str, Any]:
        ids = [await tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        victim, prefix = nodes[0], nodes[0].node_id + "/"
        async with asyncio.timeout(60):
            while True:
                held = {
                    t.id: t.lease_token
                    for t in await store.list_tasks(status="running", limit=100_000)
                    if (t.lease_owner or "").startswith(prefix)
                }
                if held:
                    break
                await asyncio.sleep(0.005)
        killed = time.monotonic()
        victim.signal_group(signal.SIGKILL)
        moved: dict[str, float] = {}
        async with asyncio.timeout(120):
            while len(moved) < len(held):
                for tid, token in held.items():
                    if tid not in moved:
                        rec = await store.get_task(tid)
                        if rec is not None and (rec.lease_token > token or rec.finished):
                            moved[tid] = time.monotonic() - killed
                await asyncio.sleep(0.01)
        records = [await tasks.wait(i, timeout=300) for i in ids]
        times = sorted(moved.values())
        return {
            "failover_p50_s": statistics.median(times),
            "failover_max_s": times[-1],
            "orphaned_tasks": len(times),
            "failed": sum(r.status != "succeeded" for r in records),
        }

    return await with_cluster(3, sim_url, body)  # type: ignore[no-any-return]


async def pause(tickets: list[dict[str, Any]], sim_url: str) -> dict[str, Any]:
    async def body(nodes: list[ClusterNode], tasks: Tasks, store: Any) -> dict[str, Any]:
        ids = [await tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        victim, prefix = nodes[1], nodes[1].node_id + "/"
        async with asyncio.timeout(60):
            while not await running_on(store, prefix):  # noqa: ASYNC110 - polling the store
                await asyncio.sleep(0.005)
        victim.signal_group(signal.SIGSTOP)
        try:
            await asyncio.sleep(2 * LEASE)  # the fault: a pause longer than the lease
        finally:
            victim.signal_group(signal.SIGCONT)
        records = [await tasks.wait(i, timeout=300) for i in ids]
        return {
            "answers": {r.id: (r.outcome or {}).get("answer") for r in records},
            "failed": sum(r.status != "succeeded" for r in records),
        }

    return await with_cluster(3, sim_url, body)  # type: ignore[no-any-return]


POINT_KEYS = (
    "failed",
    "tasks_per_s",
    "postgres_cpu_share",
    "cpu_ms_per_ticket",
    "cpu_ms_per_ticket_by_node",
    "pg_transactions_per_ticket",
    "pg_transactions_logged_per_ticket",
    "pg_transactions_by_shape",
)


async def run(quick: bool) -> dict[str, Any]:
    sim, sim_url = await start_sim(cwd=str(ROOT))
    CURRENT["sim_pid"] = sim.pid
    try:
        count = 150 if quick else 600
        tickets = generate(count, seed=9, injection_rate=0.0)
        result: dict[str, Any] = {}
        one = await throughput(1, tickets, sim_url)
        result.update({f"{k}_1": one[k] for k in POINT_KEYS if k in one})
        for n in (2, 3) if not quick else (3,):
            fresh = generate(count, seed=9 + n, injection_rate=0.0)
            point = await throughput(n, fresh, sim_url)
            result.update({f"{k}_{n}": point[k] for k in POINT_KEYS if k in point})
        if CURRENT.get("throughput_only"):
            return result
        fo = await failover(generate(count, seed=30, injection_rate=0.0), sim_url)
        result.update({k: fo[k] for k in ("failover_p50_s", "failover_max_s", "orphaned_tasks")})
        paused_tickets = generate(count, seed=9, injection_rate=0.0)
        # the same tickets as the 1-node run: their answers are the fault-free reference
        paused = await pause([{**t, "id": f"p-{t['id']}"} for t in paused_tickets], sim_url)
        reference = {f"p-{k}": v for k, v in one["answers"].items()}
        result["stale_writes_applied"] = sum(
            paused["answers"].get(k) != v for k, v in reference.items()
        )
        result["failed_tasks"] = one["failed"] + fo["failed"] + paused["failed"]
        async with httpx.AsyncClient(timeout=10) as http:
            report = (await http.get(f"{sim_url}/tools/_report")).json()
        result["duplicate_side_effects"] = sum(report["duplicates"].values())
        return result
    finally:
        sim.terminate()
        await sim.wait()


async def against(base: pathlib.Path, nodes: int, rounds: int, count: int) -> dict[str, Any]:
    """Throughput at ``nodes`` nodes, this checkout and ``base`` (a ``src`` directory)
    interleaved round by round, the order flipping each round."""
    sim, sim_url = await start_sim(cwd=str(ROOT))
    CURRENT["sim_pid"] = sim.pid
    keys = ("tasks_per_s", "pg_transactions_per_ticket")
    seen: dict[str, dict[str, list[float]]] = {
        side: {k: [] for k in (*keys, "cpu_ms_per_ticket")} for side in ("this", "base")
    }
    try:
        for r in range(rounds):
            order = ("this", "base") if r % 2 == 0 else ("base", "this")
            for side in order:
                CURRENT["src"] = str(base) if side == "base" else None
                tickets = generate(count, seed=100 + r, injection_rate=0.0)
                point = await throughput(nodes, tickets, sim_url)
                if point["failed"]:
                    raise SystemExit(f"{side}, round {r}: {point['failed']} tickets failed")
                for k in keys:
                    seen[side][k].append(point[k])
                seen[side]["cpu_ms_per_ticket"].append(sum(point["cpu_ms_per_ticket"].values()))
                print(f"round {r} {side}: {point['tasks_per_s']:.1f} tickets/s", file=sys.stderr)
    finally:
        CURRENT["src"] = None
        sim.terminate()
        await sim.wait()
    medians = {s: {k: statistics.median(v) for k, v in seen[s].items()} for s in seen}
    return {
        "base": str(base),
        "nodes": nodes,
        "rounds": rounds,
        "tickets_per_round": count,
        "median": medians,
        "ratio_this_over_base": {
            k: round(medians["this"][k] / medians["base"][k], 3) for k in medians["this"]
        },
        "runs": seen,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument(
        "--sql-log",
        type=pathlib.Path,
        default=None,
        help="the PostgreSQL server's log file (readable here): break the transactions "
        "down by statement (sets log_statement = 'all' on the run's databases only)",
    )
    parser.add_argument(
        "--throughput-only", action="store_true", help="the 1..3-node points only (diagnosis)"
    )
    parser.add_argument(
        "--against",
        type=pathlib.Path,
        default=None,
        metavar="SRC",
        help="throughput only, this checkout against another's src directory",
    )
    parser.add_argument("--nodes", type=int, default=1, help="with --against: nodes per run")
    parser.add_argument("--rounds", type=int, default=4, help="with --against: rounds")
    args = parser.parse_args()
    if args.against is not None:
        load_start = os.getloadavg()[0]
        found = asyncio.run(against(args.against, args.nodes, args.rounds,
                                    150 if args.quick else 600))  # fmt: skip
        found["meta"] = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": commit(),
            "load_1m_start": load_start,
            "load_1m_end": os.getloadavg()[0],
            "cpus": os.cpu_count(),
        }
        existing = json.loads(args.out.read_text()) if args.out.exists() else {}
        args.out.write_text(json.dumps(existing | {"against": found}, indent=2) + "\n")
        print(json.dumps(found, indent=2))
        return 0
    CURRENT["sql_log"] = args.sql_log
    CURRENT["throughput_only"] = args.throughput_only
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    result = asyncio.run(run(args.quick))
    result["meta"] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "load_1m_start": load_start,
        "load_1m_end": os.getloadavg()[0],
        "mode": "quick" if args.quick else "full",
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "lease_seconds": LEASE,
        "seconds": round(time.perf_counter() - started, 1),
        "note": "all nodes, PostgreSQL and the sim share this machine's cores",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
