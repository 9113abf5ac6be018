"""MA-1, MA-2, MA-5: probes, key metrics, searchable logs — through the node's own HTTP API."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from typing import Any

import httpx

from stalwart.errors import NotExercised
from stalwart.observe import COMMON_FIELDS
from stalwart.verify._checks_errors import _fresh_model_agents
from stalwart.verify._poll import scheduling_lag
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import Target


async def _get(t: Target, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(f"{t.http.url}{path}", params=params or None)


START_READY_S = 10.0
"""How long MA-1 waits for the node to report ready before it breaks the store."""
READY_FAILS_WITHIN_S = 3.0
"""MA-1's bound: /readyz answers 503 this soon after the store breaks (plus the
scheduling delay measured meanwhile)."""


@check(
    "MA-1",
    criterion=(
        "/livez up while the loop runs; /readyz fails within 3 s of a broken dependency and "
        "recovers; the manifest wires both probes"
    ),
    does="probes /livez and /readyz, breaks the store and the root supervisor, reads the manifest",
    estimate_s=20,
)
async def probes(t: Target) -> Outcome:
    timeline: list[dict[str, Any]] = []

    async def probe(tag: str) -> tuple[int, int]:
        live, ready = await _get(t, "/livez"), await _get(t, "/readyz")
        timeline.append(
            {
                "t": round(time.monotonic(), 3),
                "at": tag,
                "livez": live.status_code,
                "readyz": ready.status_code,
                "why": ready.text[:200],
            }
        )
        return live.status_code, ready.status_code

    # ready before the store is broken: polled, since a write that took its readiness
    # check's whole budget on a busy machine makes one probe fail (what readiness is for)
    started = time.monotonic()
    ready_at_start = False
    ok = True
    while not ready_at_start and time.monotonic() - started < START_READY_S:
        live, ready = await probe("start")
        ok &= live == 200
        ready_at_start = ready == 200
        if not ready_at_start:
            await asyncio.sleep(0.25)
    ok &= ready_at_start
    ready_after = round(time.monotonic() - started, 3) if ready_at_start else None
    store = t.service.store
    assert store is not None
    failed_after = None
    # the node runs in this process: on a machine whose cores are busy its readiness
    # probe waits for one as this loop does (with two suites running at once, 3.08 s
    # from the break to the 503), so the bound allows the scheduling delay measured
    # meanwhile, as EH-1's waits do
    async with scheduling_lag() as lag:
        broken = time.monotonic()  # the break begins with the close (MA-3 stamps alike)
        await store.close()  # the store goes away (as a lost database would)
        async with asyncio.timeout(10):
            while failed_after is None:
                live, ready = await probe("store down")
                ok &= live == 200
                if ready == 503:
                    failed_after = time.monotonic() - broken
                else:
                    await asyncio.sleep(0.1)
    await store.open()  # restored
    recovered = False
    async with asyncio.timeout(10):
        while not recovered:
            recovered = (await probe("store back"))[1] == 200
            if not recovered:
                await asyncio.sleep(0.1)
    path = t.manifest
    manifest = await asyncio.to_thread(lambda: path.read_text() if path is not None else "")
    wired = {
        "livenessProbe": "/livez" in manifest and "livenessProbe" in manifest,
        "readinessProbe": "/readyz" in manifest and "readinessProbe" in manifest,
    }
    evidence = {
        "timeline": timeline[-6:],
        "ready_at_start_after_s": ready_after,
        "readyz_failed_after_s": failed_after,
        "scheduling_lag_s": round(lag[0], 4),
        "manifest": str(path) if path is not None else "none given (--manifest)",
        "manifest_wires": wired,
    }
    ok &= failed_after is not None and failed_after < READY_FAILS_WITHIN_S + lag[0]
    ok &= recovered and all(wired.values())
    if ok:
        return Outcome("complete", evidence)
    never = (
        ""
        if ready_at_start
        else f"the node never reported ready in {START_READY_S:g} s (see the timeline's why); "
    )
    return Outcome(
        "failed",
        evidence,
        never + "wire /livez and /readyz to the orchestrator; readiness "
        "must fail within 3 s of a broken dependency (docs/observability.md)",
    )


KEY_SERIES = {
    "model latency": "stalwart_model_request_duration_seconds_count",
    "model errors": "stalwart_model_errors_total",
    "tool success": "stalwart_tool_calls_total",
    "task completion": "stalwart_tasks_finished_total",
    "cpu": "stalwart_agent_cpu_seconds_total",
    "memory": "stalwart_agent_resident_memory_bytes",
    "connections": "stalwart_agent_connections",
}


def _values(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            try:
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return out


@check(
    "MA-2",
    criterion=(
        "model latency/error rate, tool success, task completion, CPU, memory, connections "
        "present and moving"
    ),
    does="runs the workload and scrapes /metrics",
    estimate_s=15,
)
async def key_metrics(t: Target) -> Outcome:
    before = _values((await _get(t, "/metrics")).text)
    models = bool(t.app.models) and t.service.sim is not None
    tools = any(a.tools for a in t.app.agents)
    if models:
        primary = next(iter(t.app.models.values()))[0].partition(":")[2]
        t.sim.world.set_fault(primary, outage=True)  # errors to count (the fallback serves)
        try:
            await t.run_all(t.workload(10, seed=909), prefix="ma2-down")
        finally:
            t.sim.world.clear_faults(primary)
    await t.run_all(t.workload(10, seed=910), prefix="ma2")
    await asyncio.sleep(1.2)  # agents ship their samples with their heartbeats
    after = _values((await _get(t, "/metrics")).text)
    # the model series apply to apps that call models, the tool series to apps with tools
    applicable = {
        k: name
        for k, name in KEY_SERIES.items()
        if (models or not k.startswith("model")) and (tools or k != "tool success")
    }
    found = {k: name in after for k, name in applicable.items()}
    moving = {k: after.get(name, 0.0) != before.get(name, 0.0) for k, name in applicable.items()}
    evidence = {
        "series": applicable,
        "not_applicable": sorted(set(KEY_SERIES) - set(applicable)),
        "present": found,
        "moved_during_load": moving,
        "samples": {k: after.get(v) for k, v in applicable.items()},
    }
    must_move = [
        k for k in ("model latency", "tool success", "task completion", "cpu") if k in applicable
    ]
    measured = (
        f"{sum(found.values())}/{len(found)} series present; "
        f"{sum(moving[k] for k in must_move)}/{len(must_move)} that must move moved"
    )
    if all(found.values()) and all(moving[k] for k in must_move):
        return Outcome("complete", evidence, measured=measured)
    return Outcome(
        "failed",
        evidence,
        "instrument model latency and errors, tool outcomes, "
        "task completion and per-agent resources (docs/observability.md)",
        measured,
    )


def _line(row: Any) -> dict[str, Any]:
    return json.loads(row) if isinstance(row, str) else dict(row)


@check(
    "MA-5",
    criterion=(
        "every log line has the common fields; queries by agent, task and time range return "
        "exactly the matching lines"
    ),
    does="runs the workload and queries the log store",
    estimate_s=15,
)
async def searchable_logs(t: Target) -> Outcome:
    since = time.time()
    records = await t.run_all(t.workload(6, seed=1001), prefix="ma5")
    await asyncio.sleep(1.5)  # the log store writes in batches
    task_id = records[0].id
    by_task = (await _get(t, "/v1/logs", task=task_id, limit=1000)).json()
    iso = datetime.datetime.fromtimestamp(since, datetime.UTC).isoformat()
    by_agent = (await _get(t, "/v1/logs", agent=t.entry, since=iso, limit=1000)).json()
    rows_task = [_line(x) for x in by_task.get("lines", [])]
    rows_agent = [_line(x) for x in by_agent.get("lines", [])]
    missing = [r for r in rows_agent if any(f not in r for f in COMMON_FIELDS)]
    exact_task = all(r.get("task_id") == task_id for r in rows_task)
    exact_agent = all(r.get("agent_id") == t.entry for r in rows_agent)
    in_range = all(
        datetime.datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00")).timestamp()
        >= since - 0.001
        for r in rows_agent
    )
    evidence = {
        "query_task": task_id,
        "lines_for_task": len(rows_task),
        "lines_for_agent_since": len(rows_agent),
        "common_fields": list(COMMON_FIELDS),
        "lines_missing_fields": len(missing),
        "task_query_exact": exact_task,
        "agent_query_exact": exact_agent,
        "time_range_exact": in_range,
    }
    if rows_task and rows_agent and not missing and exact_task and exact_agent and in_range:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "every log line needs the common fields, in a store that "
        "answers by agent, task and time range (docs/observability.md)",
    )


def _by_label(text: str, metric: str, label: str) -> dict[str, float]:
    """Sum ``metric``'s samples by one label's value (from a /metrics exposition)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels = line[len(metric) + 1 : line.index("}")]
            for part in labels.split(","):
                key, _, value = part.partition("=")
                if key == label:
                    v = value.strip('"')
                    out[v] = out.get(v, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


@check(
    "EH-4",
    criterion=(
        "each error class logged with agent, task, dependency, class and cause, and counted "
        "in the error metric"
    ),
    does="triggers a retryable, a permanent, a transient and a systemic error",
    estimate_s=20,
    kills_per_model_agent=4,  # each fault meets closed breakers
)
async def errors_in_context(t: Target) -> Outcome:
    """Retryable, permanent, transient and systemic errors, each logged and counted."""
    if not t.app.models:
        raise NotExercised(
            "the app has no model chain: EH-4 triggers its errors at the model provider",
            fix="nothing to add if the app calls no model",
        )
    primary = next(iter(t.service.app.models.values()))[0]
    model = primary.partition(":")[2]
    since = time.time()
    before = _by_label((await _get(t, "/metrics")).text, "stalwart_errors_total", "class")
    faults = {
        "503 storm": {"status": 503},
        "500 storm": {"status": 500},
        "400": {"status": 400},
        "401": {"status": 401},
    }
    inputs = await t.model_inputs(len(faults), seed=1101)
    for n, fault in enumerate(faults.values()):
        await _fresh_model_agents(t)  # each fault meets a closed breaker
        t.sim.world.set_fault(model, **fault)
        try:
            await t.run_all(inputs[n : n + 1], prefix=f"eh4-{n}")
        finally:
            t.sim.world.clear_faults(model)
    await asyncio.sleep(1.5)  # log batches and metric samples reach the node
    iso = datetime.datetime.fromtimestamp(since, datetime.UTC).isoformat()
    lines: list[dict[str, Any]] = []
    for event in ("dependency_error", "dependency_retry", "dependency_gave_up"):
        body = (await _get(t, "/v1/logs", event=event, since=iso, limit=1000)).json()
        lines += [_line(x) for x in body.get("lines", [])]
    after = _by_label((await _get(t, "/metrics")).text, "stalwart_errors_total", "class")
    classes = {str(line.get("error_class")) for line in lines}
    axes = {
        "retryable": any(c.startswith("retryable") for c in classes),
        "permanent": any(c.startswith("permanent") for c in classes),
        "transient": any(c.endswith("transient") for c in classes),
        "systemic": any(c.endswith("systemic") for c in classes),
    }
    context = ("agent_id", "task_id", "dependency", "error_class", "error")
    lacking = [line.get("event") for line in lines if any(not line.get(k) for k in context)]
    counted = {c: after.get(c, 0.0) - before.get(c, 0.0) for c in after}
    evidence = {
        "faults": list(faults),
        "log_lines": len(lines),
        "classes_logged": sorted(classes),
        "axes_seen": axes,
        "lines_missing_context": len(lacking),
        "error_metric_deltas_by_class": counted,
        "example": lines[0] if lines else None,
    }
    ok = bool(lines) and all(axes.values()) and not lacking and any(v > 0 for v in counted.values())
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "log every error with its agent, task, dependency, class "
        "and cause, and count it by class (docs/resilience.md)",
    )
