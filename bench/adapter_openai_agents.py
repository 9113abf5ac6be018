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
   provider (in a process of its own), alternately run by the bare SDK (``Runner.run`` with its
   ``OpenAIChatCompletionsModel``) and through the adapter (``StalwartRunner``: the
   app's model chain, the journal in a real SQLite file, the guard). Each model call
   is timed from the SDK's ``get_response`` call to its return; the statistic is the
   p50 (and p99) per side over the same tickets, and the added latency is the
   difference of the p50s. The journal's commit (the SQLite append that makes each
   answer durable before the SDK sees it) is timed per call too, and the p50 of each
   hosted call less its commit gives the adapter's own cost apart from the disk.
   Run it on an idle machine: on a loaded one fsync times and scheduling dominate.

    python bench/adapter_openai_agents.py            # 40 tickets, >= 20 kills, ~680 calls a side
    python bench/adapter_openai_agents.py --quick    # fewer

Merges its key ``openai_agents`` into bench/results/adapters.json (other keys kept).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import platform
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
from examples.openai_agents_support.agent import support_agent  # noqa: E402
from examples.openai_agents_support.app import SUPPORT, app, tickets  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402
from tests.integration.adapters.oai_kill_app import run_support  # noqa: E402

from stalwart.adapters.openai_agents import StalwartModel  # noqa: E402
from stalwart.agent import Resources, TaskContext  # noqa: E402
from stalwart.agent._guarded import prepare_input  # noqa: E402
from stalwart.agent._taskagent import build_models  # noqa: E402
from stalwart.durable import Runner as DurableRunner  # noqa: E402
from stalwart.durable import SQLiteStore  # noqa: E402
from stalwart.llm.sim import SIM_URL  # noqa: E402
from stalwart.observe import EventBus  # noqa: E402
from stalwart.resilience import BreakerRegistry  # noqa: E402
from stalwart.tools import ToolRegistry  # noqa: E402

OUT = ROOT / "bench" / "results" / "adapters.json"


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


async def _latency(tmp: pathlib.Path, count: int) -> dict[str, Any]:
    bare_times: list[float] = []
    hosted_times: list[float] = []
    appends: list[float] = []  # the journal's commits (the latency part runs one call at a time)
    _timing(SQLiteStore, "append", appends)
    commits: list[float] = []  # per hosted model call: the time its journal commit took
    _timing(OpenAIChatCompletionsModel, "get_response", bare_times)
    inner: Timed = StalwartModel.get_response

    async def hosted_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        first, started = len(appends), time.perf_counter()
        try:
            return await inner(self, *args, **kwargs)
        finally:
            hosted_times.append(time.perf_counter() - started)
            commits.append(sum(appends[first:]))

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
        )
        runner = DurableRunner(store, owner="bench", events=events)

        async def hosted(ctx: Any, value: Any) -> Any:
            task = TaskContext(ctx, resources, model="main")
            assert SUPPORT.fn is not None
            return await SUPPORT.fn(task, prepare_input(task, value))

        answers: dict[str, list[Any]] = {"bare": [], "hosted": []}
        for n, ticket in enumerate(work):
            if n == 5:  # warm-up done (connections, caches): measure from here
                bare_times.clear()
                hosted_times.clear()
                commits.clear()
            bare = await Runner.run(support_agent, ticket["text"], run_config=bare_config)
            answers["bare"].append(bare.final_output)
            task_id = await runner.submit("support", {"text": ticket["text"]})
            result = await runner.run(task_id, hosted)
            answers["hosted"].append(result.result["answer"])
        await store.close()
        for model in models.values():
            await model.aclose()
        await client.close()

    # the same answers, but for the refund's id: the payment service numbers refunds in
    # arrival order, and the two sides' refunds alternate
    def plain(answer: Any) -> str:
        return re.sub(r"re-\d+", "re-N", str(answer))

    same = sum(
        plain(a) == plain(b) for a, b in zip(answers["bare"], answers["hosted"], strict=True)
    )
    bare_p50, hosted_p50 = statistics.median(bare_times), statistics.median(hosted_times)
    own_p50 = statistics.median(h - c for h, c in zip(hosted_times, commits, strict=True))
    return {
        "model_calls_per_side": len(hosted_times),
        "bare_sdk_p50_ms": round(bare_p50 * 1000, 3),
        "bare_sdk_p99_ms": round(_pct(bare_times, 0.99) * 1000, 3),
        "adapter_p50_ms": round(hosted_p50 * 1000, 3),
        "adapter_p99_ms": round(_pct(hosted_times, 0.99) * 1000, 3),
        "added_latency_p50_ms": round((hosted_p50 - bare_p50) * 1000, 3),
        "journal_commit_p50_ms": round(statistics.median(commits) * 1000, 3),
        # the adapter's own cost: each hosted call's time less its journal commit's
        "added_latency_without_journal_commit_p50_ms": round((own_p50 - bare_p50) * 1000, 3),
        "same_answers_as_bare_sdk": f"{same}/{len(work)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tickets and calls")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        kills = asyncio.run(_kills(root, 15 if args.quick else 40, 8 if args.quick else 24,
                                   args.seed))  # fmt: skip
        latency = asyncio.run(_latency(root, 40 if args.quick else 300))
    out = {
        **{
            k: kills[k]
            for k in ("rerun_model_calls_after_kill", "duplicate_side_effects", "kills", "tasks")
        },
        "added_latency_p50_ms": latency["added_latency_p50_ms"],
        "kill_run": kills,
        "latency": latency,
        "targets": {
            "added_latency_p50_ms": 1.0,
            "rerun_model_calls_after_kill": 0,
            "duplicate_side_effects": 0,
            "kills": 20,
        },
        "mode": "quick" if args.quick else "full",
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        # the machine is shared: its 1-minute load average says how noisy the run was
        "load_average_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "seconds": round(time.perf_counter() - started, 1),
    }
    merged: dict[str, Any] = json.loads(OUT.read_text()) if OUT.exists() else {}
    merged["openai_agents"] = out
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
