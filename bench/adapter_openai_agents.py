"""Benchmark of the OpenAI Agents SDK adapter: kills at step boundaries, and the latency it adds.

1. **Kills.** The support example (examples/openai_agents_support) runs a set of
   tickets on a real node twice: once undisturbed, once with its agent process
   SIGKILLed at random step boundaries (tests/integration/adapters/oai_kill_app.py:
   right after a journal commit chosen by a seeded hash, the process holds and this
   bench kills it). Counted: kills, tasks, tasks whose result differs from the
   undisturbed run, model calls re-made after a kill (model requests at the simulated
   provider, chaos run minus undisturbed run) and duplicate side effects (refund
   requests at the simulated payment service beyond one per call).
2. **Latency.** The same SDK agent, in this process, against the same simulated
   provider (in a process of its own), run per ticket by the bare SDK (``Runner.run``
   with its ``OpenAIChatCompletionsModel``) and through the adapter (the app's model
   chain, the journal in a real SQLite file at ``full`` durability, the guard, the spend
   ledger in that file as a node gives it), as
   shipped, with each model record fsynced on its own, and with each call's spend
   reservation committed on its own (the three in an order rotating per ticket). Each
   model call is timed from the SDK's ``get_response`` call to its return. The
   journal's commit of each hosted call is timed too (``latency_detail``): the p50 of
   each hosted call less its commit is the adapter's own cost apart from the disk.

    python bench/adapter_openai_agents.py            # 40 tickets, >= 20 kills, 150 latency tickets
    python bench/adapter_openai_agents.py --quick    # fewer

Merges its key ``openai_agents`` into bench/results/adapters.json (other keys kept), in
the shape every adapter bench writes (``bench/_adapter_results.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # examples/ and the kill app under tests/

import httpx  # noqa: E402
from agents import RunConfig, Runner  # noqa: E402
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel  # noqa: E402
from bench._adapter_results import (  # noqa: E402
    SIDES,
    adapter_order,
    latency_block,
    model_records,
    run_info,
    write,
)
from examples.openai_agents_support.agent import support_agent  # noqa: E402
from examples.openai_agents_support.app import SUPPORT, app, tickets  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402
from tests.integration.adapters.oai_kill_app import run_support  # noqa: E402

from stalwart.adapters.openai_agents import StalwartModel  # noqa: E402
from stalwart.agent import Resources, TaskContext  # noqa: E402
from stalwart.agent._guarded import prepare_input  # noqa: E402
from stalwart.agent._setup import build_models  # noqa: E402
from stalwart.durable import Runner as DurableRunner  # noqa: E402
from stalwart.durable import SQLiteStore  # noqa: E402
from stalwart.guard import SpendLedger  # noqa: E402
from stalwart.llm.sim import SIM_URL  # noqa: E402
from stalwart.node._simkey import provision_sim_key  # noqa: E402
from stalwart.observe import EventBus  # noqa: E402
from stalwart.resilience import BreakerRegistry  # noqa: E402
from stalwart.tools import ToolRegistry  # noqa: E402


async def _kills(tmp: pathlib.Path, count: int, max_kills: int, seed: int) -> dict[str, Any]:
    work = tickets(count, seed=seed)
    clean = await run_support(tmp / "clean", work, kill_dir=None)
    kill_dir = tmp / "kills"
    kill_dir.mkdir()
    os.environ.update(
        OAI_KILL_DIR=str(kill_dir), OAI_KILL_EVERY="2", OAI_KILL_MAX=str(max_kills),
        OAI_KILL_SEED=str(seed),
    )  # fmt: skip
    try:
        (tmp / "chaos").mkdir()
        chaos = await run_support(tmp / "chaos", work, kill_dir=kill_dir)
    finally:
        for key in ("OAI_KILL_DIR", "OAI_KILL_EVERY", "OAI_KILL_MAX", "OAI_KILL_SEED"):
            os.environ.pop(key, None)
    differing = sorted(k for k, v in chaos["results"].items() if clean["results"].get(k) != v)
    succeeded = sum(1 for status, _ in chaos["results"].values() if status == "succeeded")
    payments = chaos["tools"]
    sent = payments["requests"].get("payments", 0)
    calls = len(payments["deliveries"]["payments"])  # one key per refund call
    return {
        "tasks": len(work),
        "tasks_succeeded": succeeded,
        "kills": chaos["kills"],
        "results_differing_from_undisturbed": len(differing),
        "model_requests_undisturbed": clean["model_requests"],
        "model_requests_with_kills": chaos["model_requests"],
        "rerun_model_calls_after_kill": chaos["model_requests"] - clean["model_requests"],
        "refund_calls": calls,
        "refund_requests": sent,
        "duplicate_side_effects": (sent - calls) + payments["duplicates"]["payments"],
    }


Timed = Callable[..., Awaitable[Any]]


def _timing(cls: type[Any], method: str, into: list[float]) -> None:
    """Time every call of the coroutine method ``cls.<method>`` into ``into`` (seconds)."""
    inner: Timed = getattr(cls, method)

    async def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await inner(self, *args, **kwargs)
        finally:
            into.append(time.perf_counter() - started)

    setattr(cls, method, timed)


@contextlib.contextmanager
def _sim_process() -> Iterator[str]:
    """The simulated provider in a process of its own (as a real provider is: its work
    takes nothing from this process's event loop or GIL); its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stalwart.cli", "sim", "--port", str(port),
         "--scenario", "examples.openai_agents_support.app:SCENARIO"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the simulated provider did not start on {url}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _latency(tmp: pathlib.Path, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The common latency block (bench/_adapter_results.py) and this bench's detail."""
    samples: dict[str, list[float]] = {side: [] for side in SIDES}
    per_ticket: dict[str, list[float]] = {side: [] for side in SIDES}
    appends: list[float] = []  # the journal's commits (the latency part runs one call at a time)
    _timing(SQLiteStore, "append", appends)
    commits: dict[str, list[float]] = {side: [] for side in SIDES[1:]}  # per hosted call
    _timing(OpenAIChatCompletionsModel, "get_response", samples["bare"])
    inner: Timed = StalwartModel.get_response
    running = ["adapter"]

    async def hosted_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        first, started = len(appends), time.perf_counter()
        try:
            return await inner(self, *args, **kwargs)
        finally:
            samples[running[0]].append(time.perf_counter() - started)
            commits[running[0]].append(sum(appends[first:]))

    StalwartModel.get_response = hosted_call  # type: ignore[method-assign]
    work = tickets(count, seed=11)
    with _sim_process() as url:
        SIM_URL.set(url)  # the tools' simulated services
        client = AsyncOpenAI(base_url=f"{url}/v1", api_key="sim", max_retries=0)
        bare_config = RunConfig(
            model=OpenAIChatCompletionsModel("strong", openai_client=client),
            tracing_disabled=True,
        )
        store = SQLiteStore(str(tmp / "latency.db"))
        await store.open()
        events = EventBus(log=False)
        provision_sim_key(app, events)  # the simulated provider's key in the vault, as a node does
        models = build_models(app, {"main"}, url, events)
        resources = Resources(
            agent=SUPPORT.name,
            models=models,
            tools=ToolRegistry(SUPPORT.tools, breakers=BreakerRegistry()),
            scopes=frozenset(SUPPORT.scopes),
            callable_agents=frozenset(),
            runtime=None,
            events=events,
            security=SUPPORT.security,
            # the spend ledger in the store's file, as a node gives it: the example's budget
            # is reserved before each call and settled with its record. (No approval queue:
            # a refund the taint policy holds is refused, and the ticket goes on, as before.)
            ledger=SpendLedger(f"sqlite:///{tmp}/latency.db", events=events, holder="b/1"),
            prices=app.price_table(),
        )
        runner = DurableRunner(store, owner="bench", events=events)

        async def hosted(ctx: Any, value: Any) -> Any:
            task = TaskContext(ctx, resources, model="main")
            assert SUPPORT.fn is not None
            return await SUPPORT.fn(task, prepare_input(task, value))

        answers: dict[str, list[Any]] = {side: [] for side in SIDES}
        for n, ticket in enumerate(work):
            if n == 5:  # warm-up done (connections, caches): measure from here
                for kept in (*samples.values(), *per_ticket.values(), *commits.values()):
                    kept.clear()
                for kept in answers.values():
                    kept.clear()
            first = len(samples["bare"])
            bare = await Runner.run(support_agent, ticket["text"], run_config=bare_config)
            answers["bare"].append(bare.final_output)
            per_ticket["bare"].append(statistics.fmean(samples["bare"][first:]))
            for side in adapter_order(n):
                running[0] = side
                first = len(samples[side])
                with model_records(side):
                    task_id = await runner.submit("support", {"text": ticket["text"]})
                    result = await runner.run(task_id, hosted)
                answers[side].append(result.result["answer"])
                per_ticket[side].append(statistics.fmean(samples[side][first:]))
        await store.close()
        assert resources.ledger is not None
        await asyncio.to_thread(resources.ledger.close)
        for model in models.values():
            await model.aclose()
        await client.close()
    StalwartModel.get_response = inner  # type: ignore[method-assign]

    # the same answers, but for the refund's id: the payment service numbers refunds in
    # arrival order, and the sides' refunds alternate
    def plain(answer: Any) -> str:
        return re.sub(r"re-\d+", "re-N", str(answer))

    same = sum(
        plain(a) == plain(b) for a, b in zip(answers["bare"], answers["adapter"], strict=True)
    )
    block = latency_block(
        samples,
        per_ticket,
        statistic="each model call timed from the SDK's get_response call to its return; "
        "bare: the SDK's OpenAIChatCompletionsModel; adapter: StalwartModel in a durable "
        "task (the app's model chain, the journal and spend ledger in one SQLite file, "
        "the guard)",
    )
    detail = {
        "journal_commit_p50_ms": {
            side: round(statistics.median(commits[side]) * 1000, 3) for side in commits
        },
        # the adapter's own cost: each hosted call's time less its journal commit's
        "added_without_journal_commit_p50_ms": round(
            (
                statistics.median(
                    h - c for h, c in zip(samples["adapter"], commits["adapter"], strict=True)
                )
                - statistics.median(samples["bare"])
            )
            * 1000,
            3,
        ),
        "same_answers_as_bare_sdk": f"{same}/{len(answers['bare'])}",
    }
    return block, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tickets and calls")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        kills = asyncio.run(_kills(root, 15 if args.quick else 40, 8 if args.quick else 24,
                                   args.seed))  # fmt: skip
        latency, detail = asyncio.run(_latency(root, 40 if args.quick else 150))
    out = {
        **{
            k: kills[k]
            for k in ("rerun_model_calls_after_kill", "duplicate_side_effects", "kills", "tasks")
        },
        "different_results": kills["results_differing_from_undisturbed"],
        "added_latency_p50_ms": latency["added_p50_ms"],
        "kill_run": kills,
        "latency": latency,
        "latency_detail": detail,
        "run": run_info(
            "python bench/adapter_openai_agents.py" + (" --quick" if args.quick else ""),
            started,
            load_before,
        ),
    }
    write("openai_agents", out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
