"""SM-1..SM-4: durable checkpoints, exact resume, bounded history, idempotent side effects."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stalwart.agent import LLMAgent, Resources, TaskContext, run_llm_agent
from stalwart.agent._setup import build_models
from stalwart.durable import Runner, open_store
from stalwart.llm.sim import SIM_URL, Rule, Scenario
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry, tool
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import Target


def _result(record: Any) -> Any:
    """What SM-2 compares of a task's result: its ``answer`` (an ``LLMAgent``'s), else its
    ``output`` (a framework adapter's: the run's output), else its top-level scalar fields
    (a ``PythonAgent``'s own dict, less nested values, which may carry idempotency keys
    derived from the task's id); a failed task's error type and message."""
    outcome = record.outcome
    if record.status == "failed" and isinstance(outcome, dict):
        return ("failed", outcome.get("type"), outcome.get("message"))
    if not isinstance(outcome, dict):
        return (record.status, outcome)
    if "answer" in outcome:
        return (record.status, outcome["answer"])
    if "output" in outcome:
        return (record.status, outcome["output"])
    scalars = {k: v for k, v in outcome.items() if isinstance(v, str | int | float | bool)}
    return (record.status, scalars)


def _compared(records: list[Any]) -> str:
    done = [r.outcome for r in records if r.status == "succeeded" and isinstance(r.outcome, dict)]
    if done and all("answer" in o for o in done):
        return "the answer"
    if done and all("output" in o for o in done):
        return "the output"
    return "the status and top-level scalar fields of each result"


def _answers(records: list[Any]) -> dict[str, Any]:
    return {r.id.split("-", 1)[1]: _result(r) for r in records}


def _task_errors(records: list[Any]) -> dict[str, int]:
    """Failed tasks' errors (``type: message``) and how many had each."""
    errors: dict[str, int] = {}
    for r in records:
        if r.status == "failed":
            o = r.outcome if isinstance(r.outcome, dict) else {}
            key = f"{o.get('type', 'error')}: {str(o.get('message', r.outcome))[:200]}"
            errors[key] = errors.get(key, 0) + 1
    return errors


async def _journal_sizes(t: Target, ids: list[str]) -> dict[str, int]:
    store = t.service.store
    assert store is not None
    return {i: len((await store.load_journal(i)).entries) for i in ids}


@check(
    "SM-1",
    criterion=(
        "a journal record after each step of a task; the same records read again after "
        "reopening the store"
    ),
    does="runs one workload task and reads its journal",
    estimate_s=5,
)
async def checkpoints(t: Target) -> Outcome:
    store = t.service.store
    assert store is not None
    [record] = await t.run_all(t.workload(1, seed=202), prefix="sm1")
    journal = await store.load_journal(record.id)
    kinds = [e.kind for e in journal.entries]
    usage = (record.outcome or {}).get("usage") or {}
    # the store survives a restart: a fresh connection reads the same journal
    again = await open_store(t.store_url)
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
    if record.status == "failed" and kinds and reread == len(kinds):
        # journaled and durable, but the task itself failed (no fault was injected): that
        # is the workload's or its model's doing, not the checkpoints'
        errors = _task_errors([record])
        return Outcome(
            "not-run",
            {
                **evidence,
                "task_error": next(iter(errors)),
                "why": "the workload task failed "
                "with no fault injected, so its steps to the end could not be shown",
            },
            "make the workload's tasks succeed on an unfaulted node (on the simulated "
            "provider: App(scenario=...) rules that play your model, docs/verify.md)",
            f"task failed unfaulted ({next(iter(errors))}); records: {len(kinds)}",
        )
    return Outcome("failed", evidence, "every step must be journaled durably (docs/durable.md)")


SM2_MODEL_LATENCY_MS = 250.0
"""Added to each simulated model call while SM-2 kills (results are unchanged)."""


def _slow_sim_models(t: Target, *, latency_ms: float) -> list[str]:
    """Add latency to every simulated model of the app's chains; the models slowed."""
    if t.service.sim is None:
        return []
    models = sorted(
        {
            m.partition(":")[2]
            for chain in t.service.app.models.values()
            for m in chain
            if m.startswith("sim:")
        }
    )
    for model in models:
        t.sim.world.set_fault(model, latency_ms=latency_ms)
    return models


async def _kill_mid_task(t: Target, known: set[str], *, want: int) -> list[dict[str, Any]]:
    """SIGKILL, at random moments, agents seen running a task of this run (any task not
    in ``known``: hand-overs included) with a journaled step (so mid-task, not before
    its first step), until ``want`` kills or the run's tasks end."""
    store = t.service.store
    assert store is not None
    kills: list[dict[str, Any]] = []
    started = time.monotonic()
    while len(kills) < want and time.monotonic() - started < 90:
        await asyncio.sleep(t.rng.uniform(0.05, 0.3))
        running = [
            r for r in await store.list_tasks(status="running", limit=500) if r.id not in known
        ]
        if not running:
            pending = await store.list_tasks(status="pending", limit=500)
            if not any(r.id not in known for r in pending):
                break  # every task of the run has ended (or waits on nothing we can kill)
            continue
        # a running task at random with a journaled step (one journal read at a time, not
        # every running task's on every look)
        victim = None
        for candidate in t.rng.sample(running, len(running)):
            if (await store.load_journal(candidate.id)).entries:
                victim = candidate
                break
        if victim is None:
            continue
        if t.kill(victim.agent) is not None:
            kills.append(
                {
                    "agent": victim.agent,
                    "task": victim.id,
                    "at_s": round(time.monotonic() - started, 3),
                }
            )
    return kills


@check(
    "SM-2",
    criterion=(
        "at least 1 task killed mid-step and resumed; every resumed task's result equals the "
        "uninterrupted one; 0 steps re-run"
    ),
    does="runs workload tasks clean, then again with SIGKILLs mid-task",
    kills=4,
    estimate_s=40,
)
async def resume_after_kill(t: Target) -> Outcome:
    inputs = t.workload(30, seed=303)
    t.say(f"{len(inputs)} tasks uninterrupted")
    clean = await t.run_all(inputs, prefix="sm2clean")
    t.say(f"the same {len(inputs)} tasks with SIGKILLs mid-task")
    store = t.service.store
    assert store is not None
    known = {r.id for r in await store.list_tasks(limit=1_000_000)}
    # Steps on the simulated provider answer in microseconds: a whole task can end
    # between two looks at the store, and no kill lands mid-task. Slowing each
    # simulated model call (the answers are the same) keeps tasks mid-step long enough.
    slowed = _slow_sim_models(t, latency_ms=SM2_MODEL_LATENCY_MS)
    try:
        ids = await t.submit_all(inputs, prefix="sm2kill")
        kills = await _kill_mid_task(t, known, want=4)
        killed = [await t.tasks.wait(i, timeout=120) for i in ids]
    finally:
        for model in slowed:
            t.sim.world.clear_faults(model)
    # every task of the run (those handed over to other agents too): the ones killed
    # mid-task were claimed again (attempts > 1) and resumed from their journal
    during = [r for r in await store.list_tasks(limit=1_000_000) if r.id not in known]
    same = _answers(clean) == _answers(killed)
    sizes_clean = await _journal_sizes(t, [r.id for r in clean])
    sizes_killed = await _journal_sizes(t, [r.id for r in killed])
    rerun = sum(
        abs(sizes_killed[k.id] - sizes_clean[c.id]) for c, k in zip(clean, killed, strict=True)
    )
    unjournaled = [i for i, n in {**sizes_clean, **sizes_killed}.items() if n == 0]
    resumed = [r for r in during if r.attempts > 1]
    # a failure counts against resume only where the uninterrupted twin succeeded
    failed = [
        k.id
        for c, k in zip(clean, killed, strict=True)
        if k.status != "succeeded" and c.status == "succeeded"
    ]
    clean_ok = [r for r in clean if r.status == "succeeded"]
    evidence: dict[str, Any] = {
        "tasks": len(ids),
        "kills": kills,
        "results_equal": same,
        "failed": failed,
        "resumed_tasks": [f"{r.agent}:{r.id}" for r in resumed][:10],
        # a task run again after its runner died: killed mid-task and resumed
        "resumed": len(resumed),
        # a resumed task replays its journal: it ends with exactly the steps of a clean run
        "journal_length_difference": rerun,
        "tasks_without_journal": len(unjournaled),
        "compared": _compared(clean),
        "clean_succeeded": len(clean_ok),
        "clean_failed": _task_errors(clean),
    }
    measured = (
        f"{len(resumed)} task(s) killed mid-task and resumed; results equal: {same}; "
        f"journal length difference: {rerun}; failed: {len(failed)}"
    )
    if not clean_ok:
        return Outcome(
            "not-run",
            {
                **evidence,
                "why": "every workload task failed even uninterrupted: no result to resume to",
            },
            "make the workload's tasks succeed on an unfaulted node (on the simulated "
            "provider: App(scenario=...) rules that play your model, docs/verify.md)",
            f"0 of {len(clean)} tasks succeeded uninterrupted",
        )
    if not same or failed or rerun or unjournaled:
        return Outcome(
            "failed",
            evidence,
            "a killed task must resume from its journal to the same result (docs/durable.md)",
            measured,
        )
    if not resumed:
        return Outcome(
            "not-run",
            {**evidence, "why": "no kill landed while a task was running: nothing was resumed"},
            "make the workload's tasks take long enough to be killed mid-task (more steps "
            "per task), then run SM-2 again",
            measured,
        )
    return Outcome("complete", evidence, measured=measured)


@check(
    "SM-3",
    criterion=(
        "a 50+ step task completes with the context sent to the model under its limit at every call"
    ),
    does="runs a 55-step task with large tool outputs on the app's model chain",
    estimate_s=20,
)
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
    # the probe is stalwart's own model loop (LLMAgent) on the app's chain: it shows the
    # window of the app's LLMAgents, not the context a PythonAgent (a framework's loop
    # hosted by an adapter, the user's own code) builds for its calls
    loops = sorted(a.name for a in t.app.agents if isinstance(a, LLMAgent))
    own = sorted(
        a.name for a in t.app.agents if not isinstance(a, LLMAgent) and a.model is not None
    )
    evidence["agents_with_the_window"] = loops
    evidence["agents_building_their_own_context"] = own
    if own and not loops:
        evidence["why"] = (
            f"the app's model-calling agents {own} build the context they send themselves "
            "(their own code, or a framework's loop): the 55-step probe runs stalwart's "
            "LLMAgent window, which they do not use"
        )
        return Outcome(
            "not-run",
            evidence,
            "bound the history each of these agents sends (its framework's trimming, e.g. "
            "LangGraph's trim_messages, or ctx.call_model with a bounded message list) and "
            "show it with a long task of your own; verify cannot drive their context",
            f"not exercised: {', '.join(own)} build their own model context",
        )
    if ok and own:
        return Outcome(
            "partial",
            evidence,
            f"the LLMAgent window held, but {own} build their own context, which the probe "
            "does not exercise: bound their history and show it with a long task",
            f"LLMAgent window held ({evidence['max_context_tokens']} <= {budget} tokens); "
            f"not exercised: {', '.join(own)}",
        )
    if ok:
        return Outcome("complete", evidence)
    return Outcome("failed", evidence, "bound the history sent to the model (docs/agents.md)")


PROXY_LATENCY_MS = 150.0
"""SM-4's latency at the fault proxy of each proxied side-effect tool, per chunk each way."""


async def _kill_during_effects(
    t: Target, inputs: list[Any], before: dict[str, dict[str, int]]
) -> tuple[list[str], int, list[Any]]:
    """Submit ``inputs``; SIGKILL an agent holding side-effect tools right after each of
    up to 5 deliveries; the task ids, the kills that landed, the finished records."""
    ids = await t.submit_all(inputs, prefix="sm4")
    kills = 0
    # the agents that hold the side-effect tools are the ones killed mid-delivery
    holders = sorted(a.name for a in t.app.agents if any(x.side_effect for x in a.tools))
    seen = sum(sum(c.values()) for c in before.values())

    async def finish() -> list[Any]:
        return [await t.tasks.wait(i, timeout=120) for i in ids]

    async with asyncio.TaskGroup() as tg:
        finished = tg.create_task(finish())
        for _ in range(5):
            # kill right after a side effect was delivered: its task is between the
            # delivery and the record of it, or about to deliver the next one
            deadline = time.monotonic() + 10
            delivered_more = False
            while time.monotonic() < deadline and not finished.done():
                now = sum(sum(c.values()) for c in t.deliveries().values())
                if now > seen:
                    seen, delivered_more = now, True
                    break
                await asyncio.sleep(0.02)
            if not delivered_more:
                break  # every task ended, or nothing delivered for 10 s
            await asyncio.sleep(t.rng.uniform(0.0, 0.05))
            if t.kill(t.rng.choice(holders)) is not None:
                kills += 1
    return ids, kills, finished.result()


@check(
    "SM-4",
    criterion=(
        "at least 1 side-effect call exercised under kills; every side-effect key delivered "
        "at most once (ledger and doubles' per-key counts)"
    ),
    does="runs workload tasks that reach side-effect tools and SIGKILLs the agent meanwhile",
    kills=5,
    kills_need_side_effects=True,
    estimate_s=40,
)
async def idempotent_effects(t: Target) -> Outcome:
    """Kill the agents while side effects are in flight; count deliveries per
    idempotency key for every side-effect tool (verify's per-key record, doubles and real
    targets alike, and the simulated services' own counts where the app uses them)."""
    effects = t.side_effect_tools()
    if not effects:
        return Outcome(
            "not-run",
            {"why": "no agent of the app has a side-effect tool"},
            "nothing to deliver twice: SM-4 applies to tools declared side_effect=True",
            measured="no side-effect tools",
        )
    blocked = t.blocked_tools()
    sim_before = t.sim.world.tools.report() if t.service.sim is not None else None
    before = t.deliveries()
    inputs = t.workload(30, seed=404)
    t.say(f"{len(inputs)} tasks, SIGKILLs while side effects are in flight")
    # proxied side-effect tools reach their upstream through verify's fault proxy: latency
    # there keeps each call in flight longer, so kills land between request and answer
    slowed = [n for n in effects if n in t.proxied_tools()]
    proxy_before = {n: t.proxy(n).stats["connections"] for n in slowed}
    for name in slowed:
        t.proxy(name).set(latency_ms=PROXY_LATENCY_MS)
    try:
        ids, kills, records = await _kill_during_effects(t, inputs, before)
    finally:
        for name in slowed:
            t.proxy(name).clear()
    after = t.deliveries()
    statuses = sorted({r.status for r in records})
    per_tool: dict[str, Any] = {}
    dedupes = {x.name for a in t.app.agents for x in a.tools if x.deduplicates}
    for name in effects:
        counts = after.get(name, {})
        old = before.get(name, {})
        new = {k: n - old.get(k, 0) for k, n in counts.items() if n - old.get(k, 0) > 0}
        repeated = sum(n - 1 for n in counts.values() if n > 1)
        per_tool[name] = {
            "keys_delivered": len(new),
            # a tool declared deduplicates=True may be called again with the same key
            # (its target keeps the first call per key): a repeat is no duplicate there
            "target_dedupes_on_the_key": name in dedupes,
            "calls_repeated_with_a_key": repeated,
            "duplicates": 0 if name in dedupes else repeated,
            "real_target_blocked": name in blocked,
        }
    sim_duplicates: dict[str, int] = {}
    if sim_before is not None:
        sim_duplicates = {
            svc: n - sim_before["duplicates"].get(svc, 0)
            for svc, n in t.sim.world.tools.report()["duplicates"].items()
        }
    unknown = sum("outcome of" in str(r.outcome) and "unknown" in str(r.outcome) for r in records)
    delivered = sum(v["keys_delivered"] for v in per_tool.values())
    duplicates = sum(v["duplicates"] for v in per_tool.values()) + sum(
        max(0, n) for n in sim_duplicates.values()
    )
    evidence = {
        "tasks": len(ids),
        "task_statuses": {st: sum(r.status == st for r in records) for st in statuses},
        "kills": kills,
        "per_tool": per_tool,
        "simulated_services_duplicates": sim_duplicates,
        "unknown_outcomes_reported": unknown,
    }
    if slowed:
        evidence["through_fault_proxy"] = {
            n: {
                "latency_ms": PROXY_LATENCY_MS,
                "connections": t.proxy(n).stats["connections"] - proxy_before[n],
                **t.proxies.describe(n),
            }
            for n in slowed
        }
    measured = (
        f"{delivered} side-effect key(s) delivered under {kills} kill(s); duplicates: {duplicates}"
    )
    if duplicates:
        return Outcome(
            "failed",
            evidence,
            "side effects need idempotency keys and the ledger (docs/durable.md, docs/tools.md)",
            measured,
        )
    if not delivered or not kills:
        return Outcome(
            "not-run",
            {
                **evidence,
                "why": "no side-effect call was delivered during the kills"
                if kills
                else "no kill landed",
            },
            "make the workload reach the side-effect tools "
            f"({', '.join(effects)}), and give each a double or a simulated target "
            "(docs/verify.md, The profile)",
            measured,
        )
    return Outcome("complete", evidence, measured=measured)
