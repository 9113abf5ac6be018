"""GD-1, GD-2: fallback chains with acceptable quality; tools down without crashing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stalwart.llm import Provider, evaluate, model_client
from stalwart.resilience import DEFAULT_BREAKER
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import Target
from stalwart.verify._tool_faults import (
    degradation_record,
    model_and_tools,
    prolonged,
    tool_degradation,
)

QUALITY_FLOOR = 0.6
"""The weakest fallback must score at least this share of the primary's score."""


@check(
    "GD-1",
    criterion=(
        "with the primary model down, every task completes on the fallback, quality >= the floor"
    ),
    does="disables the primary model of each chain and runs the workload",
    estimate_s=30,
)
async def fallback_chains(t: Target) -> Outcome:
    app = t.service.app
    evidence: dict[str, Any] = {
        "chains": {k: list(v) for k, v in app.models.items()},
        "quality_floor": QUALITY_FLOOR,
    }
    if not app.models:
        return Outcome(
            "not-run",
            {**evidence, "why": "the app has no model chain"},
            "nothing to fall back from: GD-1 applies to apps whose agents call models",
            measured="no model chains",
        )
    chains = [list(v) for v in app.models.values() if len(v) > 1]
    if not chains:
        return Outcome(
            "failed",
            evidence,
            "configure a fallback chain: App.models = {'main': ['primary', 'fallback']}",
        )
    primary = chains[0][0].partition(":")[2]
    fallbacks = [m.partition(":")[2] for m in chains[0][1:]]
    store = t.service.store
    assert store is not None
    known = {r.id for r in await store.list_tasks(limit=1_000_000)}
    t.sim.world.set_fault(primary, outage=True)
    started = time.monotonic()
    try:
        records = await t.run_all(t.workload(10, seed=505), prefix="gd1")
    finally:
        t.sim.world.clear_faults(primary)
    # generic signals: every task of the run (handed-over ones too) and the requests the
    # simulated provider's fallback models answered while the primary was down
    during = [r for r in await store.list_tasks(limit=1_000_000) if r.id not in known]
    served = sum(sum(1 for a in t.sim.world.arrivals[m] if a >= started) for m in fallbacks)
    evidence["with_primary_down"] = {
        "tasks": len(records),
        "succeeded": sum(r.status == "succeeded" for r in records),
        "tasks_of_every_agent": len(during),
        "failed_tasks_of_every_agent": [r.id for r in during if r.status != "succeeded"][:10],
        "requests_served_by_the_fallback": served,
        "seconds": round(time.monotonic() - started, 3),
    }
    providers = {"sim": Provider(t.sim.base_url)}
    scores = {}
    for spec in chains[0]:
        client = model_client(spec, providers=providers, breaker=None)
        try:
            scores[spec] = (await evaluate(client, timeout=30)).score
        finally:
            await client.aclose()
    evidence["quality"] = scores
    ratio = min(scores.values()) / max(scores[chains[0][0]], 1e-9)
    evidence["fallback_to_primary_ratio"] = round(ratio, 3)
    down = evidence["with_primary_down"]
    measured = (
        f"{down['succeeded']}/{len(records)} tasks succeeded with the primary down, "
        f"{served} requests served by the fallback; fallback quality "
        f"{ratio:.0%} of the primary's (floor {QUALITY_FLOOR:.0%})"
    )
    if served == 0:
        return Outcome(
            "not-run",
            {**evidence, "why": "no workload task called a model while the primary was down"},
            "make the workload reach the agents that call models",
            measured,
        )
    ok = (
        down["succeeded"] == len(records)
        and not down["failed_tasks_of_every_agent"]
        and ratio >= QUALITY_FLOOR
    )
    if ok:
        return Outcome("complete", evidence, measured=measured)
    return Outcome(
        "failed",
        evidence,
        "tasks must complete on the fallback, and its quality "
        f"must reach {QUALITY_FLOOR:.0%} of the primary's (docs/models.md)",
        measured,
    )


@check(
    "GD-2",
    criterion="with each tool down in turn: every tool called while down (exercised), no "
    "agent crash, every task ends with a clear status",
    does="takes each tool down in turn (every call refused; a proxied tool's upstream reset "
    "at its fault proxy) under the workload",
    estimate_s=60,
)
async def tool_unavailability(t: Target) -> Outcome:
    """Take each tool down in turn (verify's switch: every call of it is refused, whatever
    it talks to) and run the workload: no agent may crash, every task must end with a
    clear status, and each tool must have been called while down (exercised)."""
    tools = sorted({tool.name for agent in t.app.agents for tool in agent.tools})
    if not tools:
        return Outcome(
            "not-run",
            {"why": "no agent of the app has a tool"},
            "nothing to take down: GD-2 applies to apps whose agents call tools",
            measured="no tools",
        )
    table: dict[str, Any] = {}
    crashed: list[str] = []
    inputs = t.workload(16, seed=606)
    for n, name in enumerate(tools):
        if n:
            # a fresh node per tool: the breaker an earlier tool's outage opened would
            # otherwise keep the workload from reaching this one
            t.say(f"a fresh node for tool {name}")
            await t.restart()
        pids = {a: t.pid(a) for a in t.agent_names()}
        proxied = name in t.proxied_tools()
        t.say(f"tool {name} down, {len(inputs)} tasks")
        if proxied:
            # its upstream is behind verify's fault proxy: every connection to it is reset
            # there, so the tool's own code meets the dead service
            proxy = t.proxy(name)
            before = proxy.stats["resets"]
            proxy.set(reset=True)
        else:
            before = t.refused_calls(name)
            t.take_down(name)
        try:
            records = await t.run_all(inputs, prefix=f"gd2-{name}")
        finally:
            if proxied:
                t.proxy(name).clear()
            else:
                t.bring_up(name)
        crashed += [f"{a} (while {name} was down)" for a, pid in pids.items() if t.pid(a) != pid]
        if proxied:
            refused = t.proxy(name).stats["resets"] - before
            how: dict[str, Any] = {
                "fault": "every connection to its upstream reset at the fault proxy",
                **t.proxies.describe(name),
                "connections_reset_while_down": refused,
            }
        else:
            refused = t.refused_calls(name) - before
            how = {"fault": "down (every call refused)"}
        statuses: dict[str, int] = {}
        for r in records:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        table[name] = {
            **how,
            "calls_refused_while_down": refused,
            "exercised": refused > 0,
            "tasks": len(records),
            "task_statuses": statuses,
            "ended_clearly": sum(r.status in ("succeeded", "failed") for r in records),
        }
    evidence = {"per_tool": table, "agents_restarted": crashed}
    exercised = [n for n, v in table.items() if v["exercised"]]
    unexercised = [n for n, v in table.items() if not v["exercised"]]
    unclear = [n for n, v in table.items() if v["ended_clearly"] != v["tasks"]]
    measured = (
        f"{len(exercised)}/{len(tools)} tools exercised; agents restarted: {len(crashed)}; "
        f"tools with tasks not ending clearly: {len(unclear)}"
    )
    if crashed or unclear:
        return Outcome(
            "failed",
            evidence,
            "a tool that is down must yield an 'unavailable' result, never a crash, and "
            "every task must end with a clear status (docs/tools.md)",
            measured,
        )
    if not exercised:
        return Outcome(
            "not-run",
            {**evidence, "why": "no workload task called any tool while it was down"},
            "make the workload reach the tools (docs/verify.md, The profile)",
            measured,
        )
    if unexercised:
        return Outcome(
            "partial",
            evidence,
            f"the workload never called {', '.join(unexercised)} while it was down: add "
            "inputs that reach them to the workload",
            measured,
        )
    return Outcome("complete", evidence, measured=measured)


@check(
    "GD-3",
    criterion=(
        "a held degradation (a model fallback; each tool with a fault proxy or a double "
        "down) is logged and timed; "
        "the ProlongedDegradation alert fires (warning, critical) and resolves"
    ),
    does="holds the primary model down past the alert's for-times; holds each tool's "
    "attempts reset at its fault proxy or double the same way",
    estimate_s=40,
)
async def prolonged_degradation(t: Target) -> Outcome:
    """Hold a degradation past the alert's `for` times (a model fallback; each proxied
    tool down); see it logged, timed, alerted, resolved."""
    return await model_and_tools(
        t,
        _model_degradation,
        tool_degradation,
        lambda v: (
            f"held {v.get('held_s')} s; notices {v.get('notifications')}"
            if v["status"] != "not-run"
            else str(v.get("why"))
        ),
        "was not logged, timed, alerted (warning, then critical) and resolved as a "
        "degradation: a tool call that is unavailable must count as one (docs/tools.md)",
    )


async def _model_degradation(t: Target) -> Outcome:
    """Hold a fallback past the alert's `for` times; see it logged, timed, alerted, resolved."""
    app = t.service.app
    if not app.models:
        return Outcome(
            "not-run",
            {"why": "the app has no model chain: GD-3 holds a model fallback as its degradation"},
            "nothing to add if the app calls no model",
            measured="no model chains",
        )
    chain, models = next((k, list(v)) for k, v in app.models.items())
    primary = models[0].partition(":")[2]
    component = f"chain:{chain}"
    inputs = t.workload(60, seed=1201)
    started = time.monotonic()
    t.sim.world.set_fault(primary, outage=True)
    try:
        await t.run_all(inputs[:3], prefix="gd3-degraded")
        deadline = time.monotonic() + 30
        while ("critical", "firing") not in prolonged(t, None) and time.monotonic() < deadline:
            await t.run_all(inputs[3:4], prefix=f"gd3-hold-{int(time.monotonic() * 1000)}")
            await asyncio.sleep(0.5)  # the degradation is held: the fault stays on
    finally:
        t.sim.world.clear_faults(primary)
    held_s = time.monotonic() - started
    # the primary returns once its breaker lets a trial through: the degradation ends
    deadline = time.monotonic() + DEFAULT_BREAKER.wait_duration_in_open + 30
    n = 0
    while ("critical", "resolved") not in prolonged(t, None) and time.monotonic() < deadline:
        n += 1
        await t.run_all(inputs[5 + n % 20 : 6 + n % 20], prefix=f"gd3-back-{n}")
        await asyncio.sleep(0.5)
    record, ok = await degradation_record(t, component, scope=None, since=None)
    evidence = {
        "component": component,
        "held_s": round(held_s, 2),
        "alert_rule": {
            "warning_for_s": 3,
            "critical_for_s": 6,
            "defaults": {"warning_for_s": 120, "critical_for_s": 900},
        },
        **record,
    }
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "log and time each degradation, and alert (warning, then "
        "critical) when it lasts (docs/observability.md)",
    )
