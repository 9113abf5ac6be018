"""GD-1, GD-2: fallback chains with acceptable quality; tools down without crashing."""

from __future__ import annotations

import time
from typing import Any

from stalwart.llm import Provider, evaluate, model_client
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import Target

QUALITY_FLOOR = 0.6
"""The weakest fallback must score at least this share of the primary's score."""


@check("GD-1")
async def fallback_chains(t: Target) -> Outcome:
    app = t.service.app
    evidence: dict[str, Any] = {
        "chains": {k: list(v) for k, v in app.models.items()},
        "quality_floor": QUALITY_FLOOR,
    }
    chains = [list(v) for v in app.models.values() if len(v) > 1]
    if not chains:
        return Outcome(
            "failed",
            evidence,
            "configure a fallback chain: App.models = {'main': ['primary', 'fallback']}",
        )
    primary = chains[0][0].partition(":")[2]
    t.sim.world.set_fault(primary, outage=True)
    started = time.monotonic()
    try:
        records = await t.run_all(t.workload(10, seed=505), prefix="gd1")
    finally:
        t.sim.world.clear_faults(primary)
    served = [((r.outcome or {}).get("usage") or {}).get("fallbacks", 0) for r in records]
    evidence["with_primary_down"] = {
        "tasks": len(records),
        "succeeded": sum(r.status == "succeeded" for r in records),
        "tasks_with_fallbacks": sum(1 for n in served if n),
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
    ok = (
        evidence["with_primary_down"]["succeeded"] == len(records)
        and evidence["with_primary_down"]["tasks_with_fallbacks"] > 0
        and ratio >= QUALITY_FLOOR
    )
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "tasks must complete on the fallback, and its quality "
        f"must reach {QUALITY_FLOOR:.0%} of the primary's (docs/models.md)",
    )


SERVICES = {
    "lookup_order": "tool:orders",
    "search_kb": "tool:kb",
    "refund": "tool:payments",
    "send_email": "tool:email",
}


@check("GD-2")
async def tool_unavailability(t: Target) -> Outcome:
    tools = sorted({tool.name for agent in t.service.app.agents for tool in agent.tools})
    pids = {a: t.pid(a) for a in t.agent_names()}
    table: dict[str, Any] = {}
    inputs = t.workload(40, seed=606)
    for name in tools:
        service = SERVICES.get(name)
        if service is None:
            table[name] = {"outcome": "not exercised (no simulated service)"}
            continue
        t.sim.world.set_fault(service, outage=True)
        try:
            records = await t.run_all(inputs[:12], prefix=f"gd2-{name}")
        finally:
            t.sim.world.clear_faults(service)
        answers = [str((r.outcome or {}).get("answer", "")) for r in records]
        table[name] = {
            "tasks": len(records),
            "ended_clearly": sum(r.status == "succeeded" for r in records),
            "told_the_user": sum("could not" in a.lower() for a in answers),
        }
    crashed = [a for a, pid in pids.items() if t.pid(a) != pid]
    evidence = {"per_tool": table, "agents_restarted": crashed}
    ok = not crashed and all(v.get("ended_clearly", 0) == v.get("tasks", 0) for v in table.values())
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "a tool that is down must yield an 'unavailable' result, never a crash (docs/tools.md)",
    )
