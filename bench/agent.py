"""Throughput and per-step overhead of the agent loop on the helpdesk example.

Writes ``bench/results/agent.json``:

- ``tickets_per_s``, ``steps_per_s``, ``p50_ticket_ms``, ``p99_ticket_ms``: the
  helpdesk app on a real node (agent processes, SQLite store, triage -> resolver
  hand-over), the simulated models at zero latency, all tickets submitted at once;
  the median of five rounds (``rounds_tickets_per_s``: the rounds; three before
  2026-12-07 04:15 UTC, the best of two before 2026-12-06 16:40 UTC, an estimate that
  swung with one lucky round: a variant's two rounds differed by up to 29%), interleaved
  with five rounds of the same app without its spend limits (``unbudgeted``:
  ``bench/_apps.py``) and with its ledger in a SQLite file of its own
  (``separate_ledger``). ``budget_throughput_ratio`` is what reserving and settling every
  model call costs: the median over the rounds of the shipped app's tickets/s over the
  unbudgeted app's in the same round (paired: one round's machine speed hits both; the
  ratio of the two medians, ``budget_throughput_ratio_of_medians``, was the headline
  before 2026-12-07 04:15 UTC, and one slow round of either side moved it by 0.1);
  ``separate_ledger_throughput_ratio`` likewise; ``budget_cpu_ratio`` is the budget's
  cost in CPU (the unbudgeted app's CPU per ticket over the shipped app's, the median
  of the rounds' ratios), stable where the throughput ratio swings with the machine's
  load;
- ``cpu_ms_per_ticket``: CPU time (user + system) of the whole process tree (the
  node with its simulated models and services, the fork server, the agent processes)
  while the tickets ran, divided by the tickets: what bounds ``tickets_per_s`` on a
  busy machine, and stable where wall times are not;
- ``overhead_per_step_us``: the loop's own cost per step (journal included),
  measured in-process: a ticket's wall time minus the time inside model calls and
  tool calls, divided by its steps (median over tickets), with the store's default
  durability (``full``: every ordinary commit is fsynced) and with ``normal``
  (``overhead_per_step_normal_us``). The simulated provider and services run in a
  process of their own (in a thread, as before, they shared the loop's GIL and their
  work was counted as the loop's), the loop logs as an agent of ``stalwart run`` does,
  and each run is a fresh process (no cache warmed by another run). Beside it:
  ``output_redaction_per_ticket_us`` (the output tier's redaction, its named-entity
  model, timed apart) and ``overhead_per_step_without_output_redaction_us``;
  ``commits_per_step`` (transactions that wrote), ``fsyncs_per_step`` (of them, the
  ordinary ones: a lazy commit is fsynced by the next ordinary one; plus
  ``syncs_per_step``, the WAL fsyncs asked for outside a commit, which run beside the
  loop: a reservation taken ahead made durable while a tool runs) and
  ``transactions_per_step`` (reads included), counted by the SQLite writer
  (``stalwart_db_commits_total``, ``stalwart_db_lazy_commits_total``,
  ``stalwart_db_syncs_total``);
  ``cpu_us_per_step`` (the whole process: the loop, its model and tool clients, the
  writer thread, the redaction's thread) and ``loop_thread_cpu_us_per_step``, each per
  step of the same tickets; the ``_budgeted`` figures are the same at ``full`` with the
  helpdesk's spend limits and its ledger in the store's file, as the node runs it.
- ``meta``: the date, the commit (``+dirty`` with uncommitted changes) and the 1-minute
  load average at the start and the end.

``--quick`` (under a minute) uses fewer tickets. ``--against DIR`` runs only the loop's
figures at ``full`` (with and without spend limits) on this checkout and on another
checkout's ``src`` directory, interleaved in fresh processes round by round, and keeps
the medians and ratios as ``loop_against`` (for a change's effect, measured in one run:
``git archive <commit> src | tar -x -C /tmp/base`` gives the other side).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench._meta import commit
from bench._node import log_like_run
from bench.slow_model import _start_sims as start_sims
from bench.slow_model import _stop as stop_sims
from examples.helpdesk.app import RESOLVER
from examples.helpdesk.tickets import generate

from stalwart.agent import App, Resources, TaskContext, run_llm_agent
from stalwart.agent import _loop as agent_loop
from stalwart.agent._setup import build_models
from stalwart.db._metrics import COMMITS, LAZY_COMMITS
from stalwart.durable import Runner, SQLiteStore
from stalwart.guard import Security, SpendLedger
from stalwart.node import app_node
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry

RESULTS = pathlib.Path(__file__).parent / "results" / "agent.json"
NODE_ROUNDS = 5
"""Node rounds per variant (odd: the headline is each variant's median round)."""


def tree_cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) so far of this process and of every descendant."""
    me = psutil.Process()
    out: dict[int, float] = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        out[proc.pid] = times.user + times.system
    return out


def commits() -> tuple[float, float, float, float]:
    """(transactions that wrote, all transactions, lazy transactions that wrote) this
    process's SQLite writers committed, and the WAL fsyncs asked for outside a commit
    (``Database.sync``, since 2026-12-07; 0 for a tree without it, compared by
    ``--against``). At ``full`` durability every writing commit but the lazy ones is one
    fsync of the WAL, and so is each of those syncs."""
    wrote = COMMITS.labels("true")._value.get()
    read = COMMITS.labels("false")._value.get()
    lazy = LAZY_COMMITS.labels("true")._value.get()
    return wrote, wrote + read, lazy, _syncs()


def _syncs() -> float:
    try:
        from stalwart.db._metrics import SYNCS
    except ImportError:  # a tree before Database.sync
        return 0.0
    return float(SYNCS.labels("sqlite")._value.get())


@contextlib.contextmanager
def sim_process() -> Iterator[str]:
    """The simulated provider and services in a process of their own (zero latency); its
    URL. In a thread of the measured process, as it was, the sim's request handling
    shared the loop's GIL: its tail (after the reply's bytes were sent) ran while the
    loop wanted to go on, and was counted as the loop's overhead."""
    url, workers = start_sims(1, 0.0)
    try:
        yield url
    finally:
        stop_sims(workers)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def node_throughput(
    count: int, app_ref: str = "examples.helpdesk.app:app"
) -> dict[str, float]:
    workdir = tempfile.mkdtemp(prefix="stalwart-bench-")
    # as `stalwart run` starts it: default settings and events, JSON logs (to a file)
    node, service = app_node(app_ref, store=f"sqlite:///{workdir}/b.db")
    log_like_run(node.id, pathlib.Path(workdir) / "node.log")
    tickets = generate(count, seed=3, injection_rate=0.0)
    out: dict[str, float] = {}

    async def work() -> None:
        async with asyncio.timeout(60):
            while not node.ready:  # noqa: ASYNC110 - the node offers no ready event
                await asyncio.sleep(0.01)
        tasks = service.tasks
        assert tasks is not None
        submitted: list[str] = []
        latencies: list[float] = []
        steps = 0
        cpu_before = tree_cpu_seconds()
        started = time.perf_counter()
        for t in tickets:
            submitted.append(await tasks.submit("triage", t, task_id=t["id"]))
        for task_id in submitted:
            record = await tasks.wait(task_id, timeout=300)
            latencies.append((record.finished_at or time.time()) - (record.created_at or 0))
            usage = (record.outcome or {}).get("usage") or {}
            steps += int(usage.get("model_calls", 0)) + int(usage.get("tool_calls", 0))
        elapsed = time.perf_counter() - started
        cpu_after = tree_cpu_seconds()
        cpu = sum(t - cpu_before.get(pid, 0.0) for pid, t in cpu_after.items())
        out.update(
            tickets_per_s=count / elapsed,
            cpu_ms_per_ticket=cpu / count * 1000,
            steps_per_s=steps / elapsed,
            p50_ticket_ms=statistics.median(latencies) * 1000,
            p99_ticket_ms=pct(latencies, 0.99) * 1000,
        )

    await node.run(until=work())
    return out


async def loop_overhead(
    count: int, durability: str, sim_url: str, budgeted: bool = False
) -> dict[str, float]:
    """``budgeted``: with the helpdesk's spend limits, its ledger in the store's file (as
    the node runs it): each model call reserves first and settles after. The simulated
    provider runs in another process (``sim_process``)."""
    os.environ["STALWART_SIM_URL"] = sim_url
    workdir = tempfile.mkdtemp(prefix="stalwart-bench-")
    path = workdir + "/o.db"
    # logging as an agent process of `stalwart run` logs (JSON lines, redacted), not
    # structlog's console renderer
    log_like_run("bench-loop", pathlib.Path(workdir) / "loop.log")
    store = SQLiteStore(path, durability=durability)
    await store.open()
    events = EventBus(log=False)
    app = App(agents=[RESOLVER], models={"main": ["sim:strong", "sim:weak"]})
    models = build_models(app, {"main"}, sim_url, events)
    ledger = SpendLedger(f"sqlite:///{path}", events=events) if budgeted else None
    chain = models["main"]
    model_time = [0.0]
    complete = chain.complete

    async def timed(request: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await complete(request, **kw)
        finally:
            model_time[0] += time.perf_counter() - t0

    chain.complete = timed  # type: ignore[method-assign]
    # the output tier's redaction (its named-entity model), timed apart: the loop's largest
    # per-task cost, and the redaction helper's to cut
    redaction_time = [0.0]
    finish = agent_loop.finish_output  # type: ignore[attr-defined]

    def timed_finish(*args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return finish(*args)
        finally:
            redaction_time[0] += time.perf_counter() - t0

    agent_loop.finish_output = timed_finish  # type: ignore[attr-defined,assignment]
    resources = Resources(
        agent="resolver",
        models=models,
        tools=ToolRegistry(RESOLVER.tools, breakers=BreakerRegistry()),
        scopes=frozenset(RESOLVER.scopes),
        callable_agents=frozenset(),
        runtime=None,
        events=events,
        security=Security(budget=RESOLVER.security.budget) if budgeted else Security(),
        ledger=ledger,
        prices=app.price_table(),
    )
    runner = Runner(store, owner="bench", events=events)

    async def workflow(ctx: Any, value: Any) -> Any:
        return await run_llm_agent(TaskContext(ctx, resources, model="main"), RESOLVER, value)

    per_step: list[float] = []
    redaction: list[float] = []  # the output redaction's wall time per ticket
    without_redaction: list[float] = []  # per step, that time left out
    # writing commits, transactions, lazy writing commits, steps, CPU s of the process and
    # of the event loop's thread, WAL syncs outside commits (the measured tickets)
    counted = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    for n, t in enumerate(generate(count + 3, seed=5, injection_rate=0.0)):
        model_time[0] = redaction_time[0] = 0.0
        wrote0, all0, lazy0, syncs0 = commits()
        cpu0, loop_cpu0 = time.process_time(), time.thread_time()
        t0 = time.perf_counter()
        task_id = await runner.submit("resolver", {"text": t["text"]})
        result = await runner.run(task_id, workflow)
        wall = time.perf_counter() - t0
        cpu, loop_cpu = time.process_time() - cpu0, time.thread_time() - loop_cpu0
        wrote1, all1, lazy1, syncs1 = commits()
        journal = await store.load_journal(task_id)
        tool_time = sum(
            float((e.value or {}).get("duration_s", 0.0))
            for e in journal.entries
            if e.name.startswith("tool:") and isinstance(e.value, dict)
        )
        steps = result.result["usage"]["model_calls"] + result.result["usage"]["tool_calls"]
        if n >= 3:  # the first tickets pay one-time costs (tokenizer load, connections)
            per_step.append((wall - model_time[0] - tool_time) / steps * 1e6)
            redaction.append(redaction_time[0] * 1e6)
            without_redaction.append(
                (wall - model_time[0] - tool_time - redaction_time[0]) / steps * 1e6
            )
            counted[0] += wrote1 - wrote0
            counted[1] += all1 - all0
            counted[2] += lazy1 - lazy0
            counted[3] += steps
            counted[4] += cpu
            counted[5] += loop_cpu
            counted[6] += syncs1 - syncs0
    agent_loop.finish_output = finish  # type: ignore[attr-defined]
    await chain.aclose()
    await store.close()
    if ledger is not None:
        ledger.close()
    suffix = ("" if durability == "full" else f"_{durability}") + ("_budgeted" if budgeted else "")
    steps = counted[3]
    return {
        f"overhead_per_step{suffix}_us": statistics.median(per_step),
        f"overhead_per_step{suffix}_p99_us": pct(per_step, 0.99),
        f"overhead_per_step_without_output_redaction{suffix}_us": statistics.median(
            without_redaction
        ),
        f"output_redaction_per_ticket{suffix}_us": statistics.median(redaction),
        f"commits_per_step{suffix}": counted[0] / steps,
        f"syncs_per_step{suffix}": counted[6] / steps,
        f"fsyncs_per_step{suffix}": (
            (counted[0] - counted[2] + counted[6]) / steps if durability == "full" else 0.0
        ),
        f"transactions_per_step{suffix}": counted[1] / steps,
        f"cpu_us_per_step{suffix}": counted[4] / steps * 1e6,
        f"loop_thread_cpu_us_per_step{suffix}": counted[5] / steps * 1e6,
        f"steps_per_ticket{suffix}": steps / count,
    }


def _loop_once(tickets: int, durability: str, budgeted: bool) -> None:
    """One ``loop_overhead`` run, its figures printed as JSON (see :func:`loop_in_process`)."""
    with sim_process() as sim_url:
        found = asyncio.run(loop_overhead(tickets, durability, sim_url, budgeted=budgeted))
    print("LOOP " + json.dumps(found))


def loop_in_process(
    tickets: int, durability: str, budgeted: bool, src: pathlib.Path | None = None
) -> dict[str, float]:
    """:func:`loop_overhead` in a fresh process (with ``src`` ahead of the installed
    package, if given): each run starts with no cache warm (the output redactor's remembers
    the answers it redacted, and every run redacts the same tickets' answers: a second
    run in one process measured 0.07 ms of redaction per ticket instead of 4-9 ms)."""
    env = dict(os.environ)
    if src is not None:  # ahead of the editable install's path
        env["PYTHONPATH"] = str(src)
    done = subprocess.run(
        [sys.executable, str(pathlib.Path(__file__).resolve()), "--loop-only", str(tickets),
         "--durability", durability] + (["--budgeted"] if budgeted else []),
        env=env, capture_output=True, text=True, timeout=900, check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOOP "))
    found: dict[str, float] = json.loads(line.removeprefix("LOOP "))
    return found


def against(other_src: pathlib.Path, tickets: int, rounds: int) -> dict[str, Any]:
    """The loop's figures at ``full``, with and without spend limits, on this checkout and
    on ``other_src`` (another checkout's ``src``), interleaved round by round in fresh
    processes of their own (in ABBA order): the machine's drift hits both alike. Medians
    of the rounds, and this checkout's over the other's."""
    runs: dict[str, list[dict[str, float]]] = {}
    sides: list[tuple[str, pathlib.Path | None]] = [("this", None), ("other", other_src)]
    for n in range(rounds):
        for budgeted in (False, True):
            # ABBA: each side goes first in every other round (a side that always ran
            # second ran on a machine the first had just loaded)
            for side, src in sides if n % 2 == 0 else sides[::-1]:
                found = loop_in_process(tickets, "full", budgeted, src)
                key = f"{side}{'_budgeted' if budgeted else ''}"
                runs.setdefault(key, []).append(
                    {k.replace("_budgeted", ""): v for k, v in found.items()}
                )
    out: dict[str, Any] = {"other_src": str(other_src), "rounds": rounds, "tickets": tickets}
    for key, values in runs.items():
        out[key] = {name: statistics.median(v[name] for v in values) for name in values[0]} | {
            "rounds_overhead_per_step_us": [round(v["overhead_per_step_us"]) for v in values]
        }
    for suffix in ("", "_budgeted"):
        mine, theirs = out[f"this{suffix}"], out[f"other{suffix}"]
        out[f"ratio{suffix}"] = {
            name: mine[name] / theirs[name]
            for name in ("overhead_per_step_us", "cpu_us_per_step", "transactions_per_step")
            if theirs.get(name)
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    parser.add_argument(
        "--note", default="", help="the load conditions of this run, kept in meta.conditions"
    )
    parser.add_argument(
        "--against",
        type=pathlib.Path,
        help="only compare the loop's figures with another checkout's src directory "
        "(interleaved rounds), kept as loop_against in the results",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --against")
    parser.add_argument("--loop-only", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--budgeted", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--durability", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop_only:
        _loop_once(args.loop_only, args.durability, args.budgeted)
        return 0
    if args.against is not None:
        load_start = round(os.getloadavg()[0], 2)
        compared = against(args.against, 30 if args.quick else 100, args.rounds)
        compared["run"] = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit(),
            "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
            **({"conditions": args.note} if args.note else {}),
        }
        kept = json.loads(args.out.read_text()) if args.out.exists() else {}
        kept["loop_against"] = compared
        args.out.write_text(json.dumps(kept, indent=2) + "\n")
        print(json.dumps(compared, indent=2))
        return 0
    result: dict[str, Any] = {}
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = round(os.getloadavg()[0], 2)
    count = 60 if args.quick else 400
    os.environ["STALWART_BENCH_LEDGER"] = tempfile.mkdtemp(prefix="stalwart-bench-") + "/l.db"
    variants = {
        "shipped": "examples.helpdesk.app:app",
        "unbudgeted": "bench._apps:unbudgeted",
        "separate_ledger": "bench._apps:separate_ledger",
    }
    rounds: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    for _ in range(NODE_ROUNDS):  # interleaved: the machine's drift hits all alike
        for name, ref in variants.items():
            rounds[name].append(asyncio.run(node_throughput(count, ref)))
    # each variant's median round (by tickets/s), whose figures are kept whole
    median = {
        k: sorted(v, key=lambda r: r["tickets_per_s"])[NODE_ROUNDS // 2] for k, v in rounds.items()
    }
    result.update(median["shipped"])
    result["unbudgeted"] = median["unbudgeted"]
    result["separate_ledger"] = median["separate_ledger"]

    def paired(side: str, base: str, figure: str) -> float:
        """The median over the rounds of ``side``'s ``figure`` over ``base``'s, each pair
        from the same round (the machine's speed that round hits both)."""
        return statistics.median(
            a[figure] / b[figure] for a, b in zip(rounds[side], rounds[base], strict=True)
        )

    result["budget_throughput_ratio"] = paired("shipped", "unbudgeted", "tickets_per_s")
    result["budget_throughput_ratio_of_medians"] = (
        median["shipped"]["tickets_per_s"] / median["unbudgeted"]["tickets_per_s"]
    )
    # the same cost in CPU (unbudgeted over shipped CPU per ticket): stable where the
    # throughput ratio swings with the machine's load
    result["budget_cpu_ratio"] = paired("unbudgeted", "shipped", "cpu_ms_per_ticket")
    result["separate_ledger_throughput_ratio"] = paired(
        "separate_ledger", "unbudgeted", "tickets_per_s"
    )
    result["rounds_tickets_per_s"] = {
        k: [round(r["tickets_per_s"], 1) for r in v] for k, v in rounds.items()
    }
    per_step = 30 if args.quick else 200
    for durability in ("full", "normal"):
        result.update(loop_in_process(per_step, durability, budgeted=False))
    result.update(loop_in_process(per_step, "full", budgeted=True))
    result["meta"] = {
        "mode": "quick" if args.quick else "full",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "note": "sim at zero latency; tickets_per_s over a real node (the sim in the "
        "node, as `stalwart run` starts it); overhead_per_step in-process with the sim in "
        "a process of its own",
        "date": started,
        "commit": commit(),
        "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        **({"conditions": args.note} if args.note else {}),
    }
    # sections other benchmarks write into the same file (bench/slow_model.py's) are kept
    if args.out.exists():
        previous = json.loads(args.out.read_text())
        for kept in ("slow_model", "loop_against", "node_against"):
            if kept in previous:
                result[kept] = previous[kept]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
