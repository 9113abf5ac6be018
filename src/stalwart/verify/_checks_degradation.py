"""GD-1, GD-2: fallback chains with acceptable quality; tools down without crashing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from stalwart.llm import Provider, evaluate, model_client
from stalwart.resilience import DEFAULT_BREAKER
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


def _prolonged(t: Target) -> list[tuple[str, str]]:
    return [
        (str(b.get("severity")), str(b.get("status")))
        for b in t.receiver.bodies
        if isinstance(b, dict) and b.get("alertname") == "ProlongedDegradation"
    ]


@check("GD-3")
async def prolonged_degradation(t: Target) -> Outcome:
    """Hold a fallback past the alert's `for` times; see it logged, timed, alerted, resolved."""
    app = t.service.app
    chain, models = next((k, list(v)) for k, v in app.models.items())
    primary = models[0].partition(":")[2]
    component = f"chain:{chain}"
    inputs = t.workload(60, seed=1201)
    started = time.monotonic()
    t.sim.world.set_fault(primary, outage=True)
    try:
        await t.run_all(inputs[:3], prefix="gd3-degraded")
        deadline = time.monotonic() + 30
        while ("critical", "firing") not in _prolonged(t) and time.monotonic() < deadline:
            await t.run_all(inputs[3:4], prefix=f"gd3-hold-{int(time.monotonic() * 1000)}")
            await asyncio.sleep(0.5)  # the degradation is held: the fault stays on
    finally:
        t.sim.world.clear_faults(primary)
    held_s = time.monotonic() - started
    # the primary returns once its breaker lets a trial through: the degradation ends
    deadline = time.monotonic() + DEFAULT_BREAKER.wait_duration_in_open + 30
    n = 0
    while ("critical", "resolved") not in _prolonged(t) and time.monotonic() < deadline:
        n += 1
        await t.run_all(inputs[5 + n % 20 : 6 + n % 20], prefix=f"gd3-back-{n}")
        await asyncio.sleep(0.5)
    notices = _prolonged(t)
    store_lines: list[Any] = []
    async with httpx.AsyncClient(timeout=5) as http:
        for event in ("degradation_started", "degradation_ended"):
            body = (await http.get(f"{t.http.url}/v1/logs", params={"event": event})).json()
            store_lines += [
                json.loads(x) if isinstance(x, str) else x for x in body.get("lines", [])
            ]
        metrics = (await http.get(f"{t.http.url}/metrics")).text
    seconds = [
        line
        for line in metrics.splitlines()
        if line.startswith("stalwart_degradation_seconds_total{") and component in line
    ]
    ended = [e for e in store_lines if e.get("event") == "degradation_ended"]
    evidence = {
        "component": component,
        "held_s": round(held_s, 2),
        "alert_rule": {
            "warning_for_s": 3,
            "critical_for_s": 6,
            "defaults": {"warning_for_s": 120, "critical_for_s": 900},
        },
        "notifications": notices,
        "logged": [e.get("event") for e in store_lines],
        "durations_s": [e.get("duration_s") for e in ended],
        "duration_metric": seconds,
    }
    order_ok = notices[:2] == [("warning", "firing"), ("critical", "firing")] if notices else False
    ok = order_ok and ("critical", "resolved") in notices and bool(ended) and bool(seconds)
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "log and time each degradation, and alert (warning, then "
        "critical) when it lasts (docs/observability.md)",
    )
