"""The Pydantic AI adapter: kills at random step boundaries, and what it adds per model call.

Two measurements, one run, the example ``examples/pydantic_ai_support`` on the
simulated models:

1. **Kills.** The support tickets run on a real node, once uninterrupted and once with
   the agent process SIGKILLed at random step boundaries: before a random set of model
   requests (the agent waits for that answer; everything before it is journaled) and
   inside random refunds just after the payment service delivered them (see
   ``tests/integration/adapters/_support_run.py``). Reported: ``kills``, ``tasks``,
   ``rerun_model_calls_after_kill`` (requests at the simulated provider beyond the
   uninterrupted run's, less the one request each model-request kill left unanswered),
   ``duplicate_side_effects`` (refunds delivered twice), and whether every task ended
   with the same result.
2. **Added latency per model call.** The same ``support_agent`` runs bare (Pydantic AI's
   own ``OpenAIChatModel`` against the sim) and hosted (``PydanticAIAgent`` in a durable
   task on a SQLite journal at ``full`` durability with the spend ledger in the same
   file, as a node gives it, its requests through
   ``TaskContext.call_model`` and the stalwart model client against the same sim), as
   shipped, with each model record fsynced on its own, and with each call's spend
   reservation committed on its own, per ticket in turn in one
   process. Each model request is timed where Pydantic AI makes it; reported: p50 and
   p90 per side, the p50 difference (target: under 1 ms), the median over tickets of
   the per-ticket difference (robust to load that changes during the run), and where
   the added time goes (``latency_detail``: the adapter's conversions; the journal's
   commits). The 1-minute load average at start and end is recorded: on a shared
   machine it decides the figures.

Writes (merges) only its own key ``"pydantic_ai"`` into ``bench/results/adapters.json``,
in the shape every adapter bench writes (``bench/_adapter_results.py``).
``--quick`` runs fewer tickets (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import random
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench._adapter_results import (
    SIDES,
    adapter_order,
    latency_block,
    model_records,
    run_info,
    write,
)
from examples.pydantic_ai_support.app import SCENARIO, SUPPORT, SupportDeps, support_agent, tickets
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings
from tests.integration.adapters._support_run import run_support

from stalwart.adapters.pydantic_ai import StalwartModel, _model
from stalwart.agent import App, Resources, TaskContext
from stalwart.agent._setup import build_models
from stalwart.durable import Runner, SQLiteStore
from stalwart.durable._journal import Context
from stalwart.guard import SpendLedger
from stalwart.llm.sim import SIM_URL, SimServer
from stalwart.node._simkey import provision_sim_key
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry

RESULTS = pathlib.Path(__file__).parent / "results" / "adapters.json"


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


class Timed(WrapperModel):
    """The bare side's model, each request timed where Pydantic AI makes it."""

    def __init__(self, wrapped: Model, samples: list[float]) -> None:
        super().__init__(wrapped)
        self.samples = samples

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        started = time.perf_counter()
        try:
            return await super().request(messages, model_settings, model_request_parameters)
        finally:
            self.samples.append(time.perf_counter() - started)


async def latency(count: int, workdir: pathlib.Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The common latency block (bench/_adapter_results.py) and this bench's detail."""
    samples: dict[str, list[float]] = {side: [] for side in SIDES}
    running = ["adapter"]
    original = StalwartModel.request

    async def timed_request(self: StalwartModel, *args: Any) -> ModelResponse:
        started = time.perf_counter()
        try:
            return await original(self, *args)
        finally:
            samples[running[0]].append(time.perf_counter() - started)

    StalwartModel.request = timed_request  # type: ignore[method-assign]
    # where the added time goes: the adapter's own conversion, and the journal's commits
    convert_samples: list[float] = []
    record_samples: dict[str, list[float]] = {side: [] for side in SIDES[1:]}
    patched = {
        name: getattr(_model, name) for name in ("to_messages", "to_tool_specs", "to_response")
    }

    def timing(fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                convert_samples.append(time.perf_counter() - started)

        return timed

    for name, fn in patched.items():
        setattr(_model, name, timing(fn))
    record = Context._record

    async def timed_record(self: Context, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await record(self, *args, **kwargs)
        finally:
            record_samples[running[0]].append(time.perf_counter() - started)

    Context._record = timed_record  # type: ignore[method-assign]
    with SimServer(scenario=SCENARIO) as sim:
        SIM_URL.set(sim.url)
        events = EventBus(log=False)
        app = App(agents=[SUPPORT], models={"main": ["sim:strong", "sim:weak"]})
        provision_sim_key(app, events)  # the simulated provider's key in the vault, as a node does
        models = build_models(app, {"main"}, sim.url, events)
        store = SQLiteStore(str(workdir / "latency.db"))
        await store.open()
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
            ledger=SpendLedger(f"sqlite:///{workdir}/latency.db", events=events, holder="b/1"),
            prices=app.price_table(),
        )
        runner = Runner(store, owner="bench", events=events)
        assert SUPPORT.fn is not None
        fn = SUPPORT.fn

        async def workflow(ctx: Any, value: Any) -> Any:
            return await fn(TaskContext(ctx, resources, model="main"), value)

        bare = Timed(
            OpenAIChatModel(
                "strong", provider=OpenAIProvider(base_url=f"{sim.url}/v1", api_key="sim")
            ),
            samples["bare"],
        )
        outputs: dict[str, int] = {"same": 0, "different": 0}
        work = tickets(count, seed=5)
        for ticket in work[:4]:  # warm both sides (connections, imports, schema caches)
            await support_agent.run(ticket["text"], model=bare, deps=SupportDeps("warm"))
            await runner.run(await runner.submit("support", ticket), workflow)
        for kept in (*samples.values(), *record_samples.values(), convert_samples):
            kept.clear()
        per_ticket: dict[str, list[float]] = {side: [] for side in SIDES}
        for n, ticket in enumerate(work):  # the sides in turn: the same machine load
            deps = SupportDeps(customer=ticket["from"])
            first = len(samples["bare"])
            plain = await support_agent.run(ticket["text"], model=bare, deps=deps)
            per_ticket["bare"].append(statistics.fmean(samples["bare"][first:]))
            for side in adapter_order(n):
                running[0] = side
                first = len(samples[side])
                with model_records(side):
                    task_id = await runner.submit("support", ticket)
                    hosted = await runner.run(task_id, workflow)
                per_ticket[side].append(statistics.fmean(samples[side][first:]))
                assert hosted is not None and hosted.status == "succeeded", hosted
                if side == "adapter":
                    same = hosted.result["output"] == plain.output.model_dump()
                    outputs["same" if same else "different"] += 1
        await store.close()
        assert resources.ledger is not None
        await asyncio.to_thread(resources.ledger.close)
        for model in models.values():
            await model.aclose()
    StalwartModel.request = original  # type: ignore[method-assign]
    Context._record = record  # type: ignore[method-assign]
    for name, fn in patched.items():
        setattr(_model, name, fn)
    hosted_calls = sum(len(samples[side]) for side in SIDES[1:])
    block = latency_block(
        samples,
        per_ticket,
        statistic="each model request timed where Pydantic AI makes it (Model.request); "
        "bare: Pydantic AI's OpenAIChatModel; adapter: PydanticAIAgent in a durable task "
        "(TaskContext.call_model, the stalwart model client, the journal and spend ledger "
        "in one SQLite file)",
    )
    detail = {
        "conversion_ms_per_model_call": {
            "mean": round(sum(convert_samples) / max(1, hosted_calls) * 1000, 3),
            "calls": 3 * hosted_calls,  # to_messages, to_tool_specs, to_response per call
        },
        "journal_commit_p50_ms": {
            side: _ms(values, 0.5) for side, values in record_samples.items()
        },
        "outputs": outputs,
    }
    return block, detail


async def kills(count: int, model_kills: int, refund_kills: int, seed: int, workdir: pathlib.Path):
    work = tickets(count, seed=seed)
    clean = await run_support(workdir / "clean.db", work)
    rng = random.Random(seed)
    at_model = set(rng.sample(range(2, clean.model_requests + 1), model_kills))
    at_refund = set(rng.sample(range(1, len(clean.deliveries) + 1), refund_kills))
    chaos = await run_support(
        workdir / "chaos.db", work, kill_at_model=at_model, kill_at_refund=at_refund
    )

    def shape(results: dict[str, Any]) -> dict[str, Any]:
        return {
            t: (r["status"], r["output"], r["usage"]["model_calls"]) for t, r in results.items()
        }

    return {
        "tasks": len(work),
        "kills": chaos.kills,
        "kills_at_model_requests": chaos.model_kills,
        "kills_inside_refunds": chaos.kills - chaos.model_kills,
        "model_requests": {"uninterrupted": clean.model_requests, "killed": chaos.model_requests},
        "rerun_model_calls_after_kill": chaos.model_requests
        - clean.model_requests
        - chaos.model_kills,
        "duplicate_side_effects": chaos.duplicates,
        "same_results": shape(chaos.results) == shape(clean.results),
        "different_results": sum(
            shape(chaos.results).get(t) != v for t, v in shape(clean.results).items()
        ),
        "refunds": len(chaos.deliveries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    count, lat = (24, 60) if args.quick else (40, 200)
    model_kills, refund_kills = (17, 4) if args.quick else (30, 6)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        killed = asyncio.run(kills(count, model_kills, refund_kills, args.seed, workdir))
        measured, detail = asyncio.run(latency(lat, workdir))
    result = {
        **killed,
        "added_latency_p50_ms": measured["added_p50_ms"],
        "latency": measured,
        "latency_detail": detail,
        "run": {
            **run_info(
                f"python bench/adapter_pydantic_ai.py{' --quick' if args.quick else ''}",
                started,
                load_before,
            ),
            "seed": args.seed,
        },
    }
    write("pydantic_ai", result, args.out)
    print(json.dumps(result, indent=2))
    ok = (
        killed["same_results"]
        and killed["rerun_model_calls_after_kill"] == 0
        and killed["duplicate_side_effects"] == 0
        and killed["kills"] >= 20
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
