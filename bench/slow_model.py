"""Slow models: tickets in flight and throughput with model calls of 2 s, default settings.

Real model calls take seconds. This bench runs the helpdesk example on the runtime's
default settings (``bench._apps:defaults``: the example caps ``max_tasks`` for its
CPU-bound zero-latency sim; here every agent has the default, 1,000) on a real node
while every model call takes ``--latency`` seconds at the simulated provider, submits
``--tickets`` tickets at once (2,000: about 61% go to the resolver, so enough of them
to fill its 1,000 slots; a submission refused at admission, HTTP 429, is retried after
its Retry-After, as a client would, and counted), and measures:

- ``tickets_per_s``: tickets / wall time from the first submit to the last answer;
- ``in_flight_max``: the most resolver tasks running at once (each is in, or between,
  its model calls: the concurrency the provider sees), sampled from the store every
  0.25 s; ``tickets_in_flight_max`` the same for triage (tickets started, not finished),
  ``tasks_in_flight_max`` for both agents together (a ticket at the resolver is two).
  Each is at most its agent's ``max_tasks`` (1,000 by default), and a resolver task
  runs only while its ticket's triage task waits for it;
- ``in_flight_by_second`` and ``tickets_in_flight_by_second``: the most resolver and
  triage tasks running in each second of the run (how fast they were started);
  ``resolver_waiting_by_second`` and ``tickets_waiting_by_second``: the most resolver and
  triage tasks waiting to be claimed;
  ``claim_batch_by_second``: each agent's claim batch (``stalwart_agent_claim_batch``:
  it doubles while claimed tasks start within a renewal tick, halves when they do not
  or the loop lags); ``claims_deferred``: claims put off because the agent's event loop
  lagged (``stalwart_agent_claim_deferred``);
- ``failed``: tickets whose triage task failed; ``resolver_failed``: tickets answered
  with their resolver task's failure (e.g. every model of the chain failed);
- ``peak_rss_mb``: node plus agent processes, sampled with psutil;
- ``leases_abandoned``, ``leases_lost``, ``heartbeats_failed``, ``outcome_unknown``:
  lease renewals that missed (counted in the run's log) and answers with a side effect
  of unknown outcome, which a lost lease mid-call leaves;
- ``baseline_tickets_per_s``: a plain asyncio + httpx client making, for each ticket, as
  many model calls as that ticket made in the stalwart run before it (none for a ticket
  routed to a person), one after another, every ticket at once, against the same
  simulated provider; ``throughput_vs_baseline`` is the ratio of the best rounds, the
  rounds interleaved (stalwart, baseline, stalwart, baseline...).

The simulated provider runs in ``--sim-procs`` processes sharing one port
(SO_REUSEPORT), apart from the node, so its capacity is not what is measured.
Writes the ``slow_model`` section of ``bench/results/agent.json`` (other keys kept).

    python bench/slow_model.py                    # 2,000 tickets, 2 s calls, 2 rounds
    python bench/slow_model.py --quick            # 300 tickets, 1 round
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
from bench._meta import commit  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "agent.json"
APP = os.environ.get("SLOW_MODEL_APP", "bench._apps:defaults")
SUBMITTERS = 64
"""Tickets being submitted at once, as that many clients would: submitted one after
another, each awaiting its store transaction, they arrived at ~45/s, and that rate, not
the agents, bounded the tasks in flight (~600); all 2,000 at once made the node's store
miss a read's 10 s deadline."""


# -- the simulated provider: N processes on one port ---------------------------------------
def _sim_worker(port: int, latency_ms: float) -> None:
    import uvicorn
    from examples.helpdesk.app import SCENARIO

    from stalwart.llm.sim._faults import Fault
    from stalwart.llm.sim._server import SimWorld, build_app

    world = SimWorld(SCENARIO)
    for model in ("strong", "weak"):
        world.faults.set(model, Fault(latency_ms=latency_ms))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # inherited by every accepted connection: without it a keep-alive client waited ~40 ms
    # a call (the response's second write held back until the client's delayed ACK)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        build_app(world), log_level="warning", lifespan="off", access_log=False, backlog=4096
    )
    uvicorn.Server(config).run(sockets=[sock])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_sims(procs: int, latency_ms: float) -> tuple[str, list[subprocess.Popen[bytes]]]:
    import httpx

    port = _free_port()
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--sim-worker", str(port), "--latency-ms", str(latency_ms)]
        )
        for _ in range(procs)
    ]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                return url, workers
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    _stop(workers)
    raise RuntimeError("the simulated provider did not start within 30 s")


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(10)
        except subprocess.TimeoutExpired:
            w.kill()


# -- stalwart ------------------------------------------------------------------------------
def _cpu_seconds(pids: list[int]) -> float:
    """CPU seconds (user + system) so far of the processes ``pids`` (gone ones: 0)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _running_by_agent(db: str) -> dict[str, int]:
    """Tasks running now per agent under a live lease (one whose runner gave it up and
    that waits to be claimed again is not counted), and tasks waiting to be claimed
    (``AGENT:pending``), read on a connection of the bench's own (the store's file in
    WAL mode: the node's writer is not held up)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
        rows = c.execute(
            "SELECT agent, count(*) FROM stalwart_tasks WHERE status = 'running' "
            "AND lease_expires >= ? GROUP BY agent",
            (time.time(),),
        ).fetchall()
        waiting = c.execute(
            "SELECT agent, count(*) FROM stalwart_tasks WHERE status = 'pending' GROUP BY agent"
        ).fetchall()
    found = {str(agent): int(n) for agent, n in rows}
    found.update({f"{agent}:pending": int(n) for agent, n in waiting})
    return found


_COUNTED = {
    "leases_abandoned": "durable_lease_abandoned",
    "leases_lost": "durable_lease_lost",
    "heartbeats_failed": "durable_heartbeat_failed",
    "tasks_released_lost": "task_lease_lost",
}


def _log_counts(path: pathlib.Path) -> dict[str, int]:
    """How often the run's processes logged each event of ``_COUNTED`` (JSON lines)."""
    counts = dict.fromkeys(_COUNTED, 0)
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            for key, event in _COUNTED.items():
                if f'"{event}"' in line:
                    counts[key] += 1
    return counts


async def _stalwart(count: int, sim_url: str, sims: list[int], keep: bool) -> dict[str, Any]:
    import psutil
    from bench._node import log_like_run
    from examples.helpdesk.tickets import generate

    from stalwart.errors import Overloaded
    from stalwart.node import app_node
    from stalwart.observe import REGISTRY

    def _deferred(agent: str) -> float:
        """Claims ``agent``'s process put off because its loop lagged (shipped to the node)."""
        name = "stalwart_agent_claim_deferred_total"
        return REGISTRY.get_sample_value(name, {"agent": agent}) or 0.0

    os.environ["STALWART_SIM_URL"] = sim_url
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="stalwart-slow-"))
    db = workdir / "s.db"
    # as `stalwart run` starts it: default settings and events, JSON logs (to a file)
    node, service = app_node(APP, store=f"sqlite:///{db}")
    log_like_run(node.id, workdir / "node.log")
    tickets = generate(count, seed=5, injection_rate=0.0)
    out: dict[str, Any] = {}
    me = psutil.Process()

    def tree() -> list[int]:
        """The node's process and its descendants (the fork server, the agents), not
        the simulated provider's processes."""
        return [me.pid] + [c.pid for c in me.children(recursive=True) if c.pid not in sims]

    async def sample(stop: asyncio.Event) -> None:
        peaks = {"resolver": 0, "triage": 0, "all": 0, "rss": 0.0}
        pids = tree()
        rounds = 0
        began = time.perf_counter()
        # second of the run -> most resolver, triage running; resolver waiting; claim batch
        # of resolver, triage; most triage waiting
        by_second: dict[int, list[int]] = {}
        while not stop.is_set():
            running = await asyncio.to_thread(_running_by_agent, str(db))
            second = by_second.setdefault(int(time.perf_counter() - began), [0] * 6)
            for n, agent in enumerate(("resolver", "triage")):
                peaks[agent] = max(peaks[agent], running.get(agent, 0))
                second[n] = max(second[n], running.get(agent, 0))
            second[2] = max(second[2], running.get("resolver:pending", 0))
            second[5] = max(second[5], running.get("triage:pending", 0))
            for n, agent in enumerate(("resolver", "triage"), 3):  # shipped every heartbeat
                batch = REGISTRY.get_sample_value("stalwart_agent_claim_batch", {"agent": agent})
                second[n] = int(batch or 0)
            peaks["all"] = max(peaks["all"], running.get("resolver", 0) + running.get("triage", 0))
            if rounds % 4 == 0:  # memory once a second (a process scan costs CPU too)
                pids = tree()
                rss = 0
                for pid in pids:
                    try:
                        rss += psutil.Process(pid).memory_info().rss
                    except psutil.Error:
                        pass
                peaks["rss"] = max(peaks["rss"], rss / 2**20)
            rounds += 1
            try:
                async with asyncio.timeout(0.25):
                    await stop.wait()
            except TimeoutError:
                pass
        out["in_flight_max"] = peaks["resolver"]
        seconds = [by_second.get(t, [0] * 6) for t in range(max(by_second) + 1)]
        out["in_flight_by_second"] = [s[0] for s in seconds]
        out["tickets_in_flight_by_second"] = [s[1] for s in seconds]
        out["resolver_waiting_by_second"] = [s[2] for s in seconds]
        out["tickets_waiting_by_second"] = [s[5] for s in seconds]
        out["claim_batch_by_second"] = {
            "resolver": [s[3] for s in seconds],
            "triage": [s[4] for s in seconds],
        }
        out["tickets_in_flight_max"] = peaks["triage"]
        out["tasks_in_flight_max"] = peaks["all"]
        out["peak_rss_mb"] = round(peaks["rss"], 1)

    async def work() -> None:
        async with asyncio.timeout(60):
            while not node.ready:  # noqa: ASYNC110 - the node offers no ready event
                await asyncio.sleep(0.01)
        tasks = service.tasks
        assert tasks is not None
        stop = asyncio.Event()
        pids = tree()
        deferred_before = {agent: _deferred(agent) for agent in ("resolver", "triage")}
        cpu_node, cpu_agents, cpu_sim = (
            _cpu_seconds(pids[:1]), _cpu_seconds(pids[1:]), _cpu_seconds(sims)
        )  # fmt: skip
        async with asyncio.TaskGroup() as group:
            group.create_task(sample(stop))
            started = time.perf_counter()
            shed = 0

            clients = asyncio.Semaphore(SUBMITTERS)

            async def submit(ticket: dict[str, Any]) -> str:
                nonlocal shed
                async with clients:
                    while True:  # as an HTTP client does on a 429: wait Retry-After, resubmit
                        try:
                            return await tasks.submit("triage", ticket, task_id=ticket["id"])
                        except Overloaded as exc:
                            shed += 1
                            await asyncio.sleep(exc.retry_after or 1.0)

            ids = list(await asyncio.gather(*(submit(t) for t in tickets)))
            calls: list[int] = []
            failed = unknown = resolver_failed = 0
            for task_id in ids:
                record = await tasks.wait(task_id, timeout=900)
                if record.status != "succeeded":
                    failed += 1
                elif (record.outcome or {}).get("status") == "failed":
                    resolver_failed += 1  # triage answered, but with the resolver's failure
                if (record.outcome or {}).get("outcome_unknown") is True:
                    unknown += 1
                usage = (record.outcome or {}).get("usage") or {}
                calls.append(int(usage.get("model_calls", 0)))
            elapsed = time.perf_counter() - started
            stop.set()
        pids = tree()
        out["claims_deferred"] = {
            agent: int(_deferred(agent) - deferred_before[agent]) for agent in deferred_before
        }
        out["cpu_ms_per_ticket"] = {
            "node": round((_cpu_seconds(pids[:1]) - cpu_node) * 1000 / count, 2),
            # agents that ended meanwhile (none, in a clean run) are not counted
            "agents": round((_cpu_seconds(pids[1:]) - cpu_agents) * 1000 / count, 2),
            "sim": round((_cpu_seconds(sims) - cpu_sim) * 1000 / count, 2),
        }
        out["_calls"] = calls
        out.update(
            tickets=count,
            failed=failed,
            resolver_failed=resolver_failed,
            outcome_unknown=unknown,
            submissions_shed=shed,
            **_log_counts(workdir / "node.log"),
            seconds=round(elapsed, 1),
            tickets_per_s=round(count / elapsed, 2),
            model_calls_per_ticket=round(statistics.fmean(calls), 2),
        )

    try:
        await node.run(until=work())
    finally:
        if keep:  # the store and node.log, for a look afterwards
            print(f"kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


# -- the baseline: asyncio + httpx, the same calls -----------------------------------------
async def _baseline(sim_url: str, calls: list[int], sims: list[int]) -> dict[str, Any]:
    import httpx
    from examples.helpdesk.tickets import generate

    count = len(calls)
    tickets = generate(count, seed=5, injection_rate=0.0)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=f"{sim_url}/v1", limits=limits, timeout=120) as http:

        async def ticket(n: int, text: str) -> None:
            messages = [{"role": "system", "content": "You resolve support tickets."},
                        {"role": "user", "content": text}]  # fmt: skip
            for _ in range(n):
                for attempt in range(3):  # as any client would: a reused connection the
                    try:  # server closed meanwhile is retried (stalwart's policy does too)
                        r = await http.post(
                            "/chat/completions",
                            json={"model": "strong", "messages": messages, "max_tokens": 512},
                            headers={"authorization": "Bearer sim"},
                        )
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                r.raise_for_status()
                messages.append(r.json()["choices"][0]["message"])

        cpu_client, cpu_sim = _cpu_seconds([os.getpid()]), _cpu_seconds(sims)
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for n, t in zip(calls, tickets, strict=True):
                group.create_task(ticket(n, t["text"]))
        elapsed = time.perf_counter() - started
        cpu = {
            "client": round((_cpu_seconds([os.getpid()]) - cpu_client) * 1000 / count, 2),
            "sim": round((_cpu_seconds(sims) - cpu_sim) * 1000 / count, 2),
        }
    return {
        "seconds": round(elapsed, 1),
        "tickets_per_s": round(count / elapsed, 2),
        "cpu_ms_per_ticket": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=2.0, help="seconds per model call")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sim-procs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="300 tickets, one round")
    parser.add_argument(
        "--keep", action="store_true", help="keep each round's store and node.log (printed)"
    )
    parser.add_argument("--sim-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--latency-ms", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sim_worker:
        _sim_worker(args.sim_worker, args.latency_ms)
        return
    if args.quick:
        args.tickets, args.rounds = 300, 1
    load_at_start = round(os.getloadavg()[0], 2)
    sim_url, workers = _start_sims(args.sim_procs, args.latency * 1000)
    sims = [w.pid for w in workers]
    runs: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            run = asyncio.run(_stalwart(args.tickets, sim_url, sims, args.keep))
            calls = run.pop("_calls")
            runs.append(run)
            print(f"round {r}: stalwart {run}", flush=True)
            baselines.append(asyncio.run(_baseline(sim_url, calls, sims)))
            print(f"round {r}: baseline {baselines[-1]}", flush=True)
    finally:
        _stop(workers)
    best = max(runs, key=lambda run: run["tickets_per_s"])
    base = max(b["tickets_per_s"] for b in baselines)
    section = {
        **best,
        "model_latency_s": args.latency,
        "sim_processes": args.sim_procs,
        "rounds": args.rounds,
        "baseline_tickets_per_s": base,
        "throughput_vs_baseline": round(best["tickets_per_s"] / base, 2),
        "runs": runs,
        "baselines": baselines,
        "settings": "the helpdesk on the runtime's defaults (bench._apps:defaults)",
        "targets": {"in_flight_max": 1000, "throughput_vs_baseline": 0.8},
        "run": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": commit(),
            "cpus": os.cpu_count(),
            "load_average_1m": {"start": load_at_start, "end": round(os.getloadavg()[0], 2)},
        },
    }
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["slow_model"] = section
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(section, indent=2))


if __name__ == "__main__":
    main()
