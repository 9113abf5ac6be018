"""SM-1..SM-4: durable checkpoints, exact resume, bounded history, idempotent side effects."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stalwart.agent import LLMAgent, Resources, TaskContext, run_llm_agent
from stalwart.agent._taskagent import build_models
from stalwart.durable import Runner, open_store
from stalwart.llm.sim import SIM_URL, Rule, Scenario
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry, tool
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import Target


def _answers(records: list[Any]) -> dict[str, Any]:
    return {r.id.split("-", 1)[1]: (r.outcome or {}).get("answer") for r in records}


async def _journal_sizes(t: Target, ids: list[str]) -> dict[str, int]:
    store = t.service.store
    assert store is not None
    return {i: len((await store.load_journal(i)).entries) for i in ids}


@check("SM-1")
async def checkpoints(t: Target) -> Outcome:
    store = t.service.store
    assert store is not None
    [record] = await t.run_all(t.workload(1, seed=202), prefix="sm1")
    journal = await store.load_journal(record.id)
    kinds = [e.kind for e in journal.entries]
    usage = (record.outcome or {}).get("usage") or {}
    # the store survives a restart: a fresh connection reads the same journal
    again = await open_store(f"sqlite:///{t.workdir}/verify.db")
    try:
        reread = len((await again.load_journal(record.id)).entries)
    finally:
        await again.close()
    evidence = {
        "task": record.id,
        "records": len(kinds),
        "kinds": kinds,
        "store": store.url,
        "durability": store.durability,
        "usage": usage,
        "records_after_reopen": reread,
    }
    if record.status == "succeeded" and kinds and reread == len(kinds):
        return Outcome("complete", evidence)
    return Outcome("failed", evidence, "every step must be journaled durably (docs/durable.md)")


@check("SM-2")
async def resume_after_kill(t: Target) -> Outcome:
    inputs = t.workload(30, seed=303)
    clean = await t.run_all(inputs, prefix="sm2clean")
    ids = await t.submit_all(inputs, prefix="sm2kill")
    kills: list[float] = []
    victim = t.agent_names()[-1]
    started = time.monotonic()
    for _ in range(4):  # SIGKILL at random points of the run
        await asyncio.sleep(t.rng.uniform(0.05, 0.3))
        if t.kill(victim) is not None:
            kills.append(round(time.monotonic() - started, 3))
    killed = [await t.tasks.wait(i, timeout=120) for i in ids]
    same = _answers(clean) == _answers(killed)
    sizes_clean = await _journal_sizes(t, [r.id for r in clean])
    sizes_killed = await _journal_sizes(t, [r.id for r in killed])
    rerun = sum(
        abs(sizes_killed[k.id] - sizes_clean[c.id]) for c, k in zip(clean, killed, strict=True)
    )
    unjournaled = [i for i, n in {**sizes_clean, **sizes_killed}.items() if n == 0]
    evidence = {
        "tasks": len(ids),
        "kill_points_s": kills,
        "results_equal": same,
        "failed": [r.id for r in killed if r.status != "succeeded"],
        "resumed": sum(r.attempts > 1 for r in killed),
        # a resumed task replays its journal: it ends with exactly the steps of a clean run
        "journal_length_difference": rerun,
        "tasks_without_journal": len(unjournaled),
    }
    ok = same and not evidence["failed"] and kills and not rerun and not unjournaled
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "a killed task must resume from its journal to the same result (docs/durable.md)",
    )


@check("SM-3")
async def bounded_history(t: Target) -> Outcome:
    @tool(scopes=["pages:read"], timeout=10)
    async def fetch_page(n: int) -> str:
        """One page of a long report (a large output)."""
        return f"page {n}: " + ("the quick brown fox jumps over the lazy dog " * 80)

    budget = 3000
    agent = LLMAgent(
        name="verify-long-task",
        model="main",
        tools=[fetch_page],
        scopes=["pages:read"],
        max_steps=70,
        history_tokens=budget,
    )
    saved = t.sim.world.brain.scenario
    t.sim.world.brain.scenario = Scenario(
        (
            Rule(match="read the report", call="fetch_page", arguments={"n": "{count}"}, repeat=55),
            Rule(match="read the report", requires=("fetch_page",), answer="I read the report."),
        )
    )
    bus = EventBus(log=False)
    app = t.service.app
    chain_name = "main" if "main" in app.models else next(iter(app.models))
    models = build_models(app, {chain_name}, t.sim.url, bus)
    agent = LLMAgent(**{**agent.__dict__, "model": chain_name})
    seen: list[int] = []
    chain = models[chain_name]
    complete = chain.complete

    async def recording(request: Any, **kw: Any) -> Any:
        response = await complete(request, **kw)
        seen.append(response.usage.prompt_tokens)
        return response

    chain.complete = recording  # type: ignore[method-assign]
    resources = Resources(
        agent.name,
        models,
        ToolRegistry([fetch_page], breakers=BreakerRegistry()),
        frozenset(agent.scopes),
        frozenset(),
        None,
        bus,
    )
    store = t.service.store
    assert store is not None
    runner = Runner(store, owner="verify-sm3", events=bus)

    async def workflow(ctx: Any, value: Any) -> Any:
        SIM_URL.set(t.sim.url)
        return await run_llm_agent(TaskContext(ctx, resources, model=chain_name), agent, value)

    try:
        task_id = await runner.submit(agent.name, {"text": "please read the report"})
        result = await runner.run(task_id, workflow)
    finally:
        t.sim.world.brain.scenario = saved
        await chain.aclose()
    outcome = result.result if isinstance(result.result, dict) else {}
    evidence = {
        "steps": outcome.get("steps"),
        "tool_calls": (outcome.get("usage") or {}).get("tool_calls"),
        "budget_tokens": budget,
        "max_context_tokens": outcome.get("max_context_tokens"),
        "max_prompt_tokens_seen_by_model": max(seen, default=0),
        "model_calls": len(seen),
        "strategy": "sliding window (system prompt and task kept)",
    }
    ok = (
        result.status == "succeeded"
        and (outcome.get("steps") or 0) >= 50
        and (outcome.get("max_context_tokens") or budget + 1) <= budget
    )
    if ok:
        return Outcome("complete", evidence)
    return Outcome("failed", evidence, "bound the history sent to the model (docs/agents.md)")


@check("SM-4")
async def idempotent_effects(t: Target) -> Outcome:
    before = t.sim.world.tools.report()
    inputs = [i for i in t.workload(60, seed=404) if "refund" in str(i).lower()][:15]
    ids = await t.submit_all(inputs, prefix="sm4")
    victim = t.agent_names()[-1]
    kills = 0
    for _ in range(5):  # kill while refunds and e-mails are in flight
        await asyncio.sleep(t.rng.uniform(0.02, 0.15))
        if t.kill(victim) is not None:
            kills += 1
    records = [await t.tasks.wait(i, timeout=120) for i in ids]
    after = t.sim.world.tools.report()
    unknown = sum("outcome of" in str(r.outcome) and "unknown" in str(r.outcome) for r in records)
    evidence = {
        "tasks": len(ids),
        "kills": kills,
        "duplicates": after["duplicates"],
        "duplicates_before": before["duplicates"],
        "unknown_outcomes_reported": unknown,
        "deliveries": {k: len(v) for k, v in after["deliveries"].items()},
    }
    ok = all(v == 0 for v in after["duplicates"].values()) and kills > 0
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "side effects need idempotency keys and the ledger (docs/durable.md, docs/tools.md)",
    )
