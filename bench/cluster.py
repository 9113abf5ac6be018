"""Scale-out on one PostgreSQL: throughput with 1..3 nodes, failover time, fencing.

Writes ``bench/results/cluster.json``:

- ``tasks_per_s_1``, ``tasks_per_s_2`` (full mode), ``tasks_per_s_3``: helpdesk tickets
  completed per second by 1, 2, 3 node processes on this machine (sim at zero
  latency, one shared sim, all tickets submitted at once), with PostgreSQL's own
  CPU share noted;
- ``failover_p50_s``, ``failover_max_s``: from the SIGKILL of a whole node (node,
  fork server, agents) to each of its orphaned tasks being claimed by another node;
- ``stale_writes_applied``: after a node is paused (SIGSTOP) for two leases and
  resumed, tasks whose result differs from the fault-free run (a stale write that
  landed would show here) -- must be 0;
- ``duplicate_side_effects``: duplicate deliveries per idempotency key counted by the
  sim's payment and e-mail services over the whole run -- must be 0.

``--quick`` (under a minute) uses fewer tickets and skips the 2-node point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import signal
import statistics
import sys
import time
import uuid
from typing import Any

import httpx
import psutil
import psycopg

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.helpdesk.app import app as helpdesk  # noqa: E402
from examples.helpdesk.tickets import generate  # noqa: E402

from stalwart.durable import open_store  # noqa: E402
from stalwart.node import Tasks  # noqa: E402
from stalwart.testing._cluster import ClusterNode, start_node, start_sim  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "cluster.json"
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


def postgres_cpu_seconds() -> float:
    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if proc.info["name"] and proc.info["name"].startswith("postgres"):
            times = proc.info["cpu_times"]
            total += times.user + times.system
    return total


async def running_on(store: Any, prefix: str) -> list[Any]:
    """Tasks running under a lease of the node whose owners start with ``prefix``."""
    running = await store.list_tasks(status="running", limit=100_000)
    return [t for t in running if (t.lease_owner or "").startswith(prefix)]


async def with_cluster(n: int, sim_url: str, body: Any) -> Any:
    name = new_database()
    nodes: list[ClusterNode] = []
    try:
        for i in range(n):
            nodes.append(await start_node(f"n{i}", url_for(name), sim_url, cwd=str(ROOT)))
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
        cpu0 = postgres_cpu_seconds()
        started = time.perf_counter()
        ids = [await tasks.submit("triage", t, task_id=t["id"]) for t in tickets]
        records = [await tasks.wait(i, timeout=300) for i in ids]
        elapsed = time.perf_counter() - started
        pg_cpu = postgres_cpu_seconds() - cpu0
        return {
            "tasks_per_s": len(ids) / elapsed,
            "answers": {r.id: (r.outcome or {}).get("answer") for r in records},
            "failed": sum(r.status != "succeeded" for r in records),
            "postgres_cpu_share": pg_cpu / elapsed,
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


async def run(quick: bool) -> dict[str, Any]:
    sim, sim_url = await start_sim(cwd=str(ROOT))
    try:
        count = 150 if quick else 600
        tickets = generate(count, seed=9, injection_rate=0.0)
        result: dict[str, Any] = {}
        one = await throughput(1, tickets, sim_url)
        result["tasks_per_s_1"] = one["tasks_per_s"]
        result["postgres_cpu_share_1"] = one["postgres_cpu_share"]
        for n in (2, 3) if not quick else (3,):
            fresh = generate(count, seed=9 + n, injection_rate=0.0)
            point = await throughput(n, fresh, sim_url)
            result[f"tasks_per_s_{n}"] = point["tasks_per_s"]
            result[f"postgres_cpu_share_{n}"] = point["postgres_cpu_share"]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(run(args.quick))
    result["meta"] = {
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
