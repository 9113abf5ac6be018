"""Faults on tools' dependencies: at the fault proxy verify put in front of a proxied
tool's upstream (profile mode ``proxy:``), or at a double's switch (a tool that runs its
double: each attempt reset or held unanswered, as a dead service behind it would). What
EH-1 (resets: the attempts and their spacing), EH-2 (resets until the tool's breaker
stops the calls, then recovery), EH-3 (a black hole: each call must end by its timeout),
GD-2 (resets: the tool's own code meets a dead service; proxied tools), GD-3 (resets
held until the prolonged-degradation alert) and SM-4 (latency: side effects in flight
longer while agents are killed; proxied tools) do to them, measured from the attempt
counters, the node's log store (each tool call logs a ``tool_call`` line with its
outcome and latency) and the alerts delivered."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from stalwart.errors import NotExercised
from stalwart.resilience import BreakerConfig, RetryPolicy
from stalwart.tools import Tool
from stalwart.verify._poll import scheduling_lag, until
from stalwart.verify._registry import Outcome
from stalwart.verify._target import Target

__all__ = [
    "HANG_SLACK_S",
    "RETRY_SLACK_S",
    "WAIT_EARLY_S",
    "breaker_evidence",
    "call_bound",
    "degradation_record",
    "expected_wait",
    "hang_tool",
    "prolonged",
    "reaching_input",
    "retry_evidence",
    "tool_breaker",
    "tool_calls",
    "tool_degradation",
    "tool_retries",
    "tool_spec",
    "unproxied_hint",
    "waits_as_expected",
    "with_tools",
]

HANG_SLACK_S = 2.0
"""How far past its timeout a hung call may end (scheduling on a loaded machine)."""


def _at(t: Target, tool: str) -> str:
    """Where ``tool``'s faults are applied, for the evidence and the progress lines."""
    return "at its fault proxy" if tool in t.proxied_tools() else "at its double"


def tool_spec(t: Target, tool: str) -> Tool:
    """The app's declaration of ``tool``: its timeout, retry policy and breaker."""
    return next(x for a in t.app.agents for x in a.tools if x.name == tool)


def breaker_evidence(config: BreakerConfig | None) -> dict[str, Any] | None:
    """What EH-2 reports of a breaker's settings (a model provider's or a tool's)."""
    if config is None:
        return None
    return {
        "failure_rate_threshold_pct": config.failure_rate_threshold,
        "window": config.window_size,
        "minimum_calls": config.minimum_calls,
        "wait_in_open_s": config.wait_duration_in_open,
    }


def retry_evidence(policy: RetryPolicy | None) -> dict[str, Any] | None:
    """What EH-1 reports of a retry policy's settings (a model provider's or a tool's)."""
    if policy is None:
        return None
    return {
        "max_attempts": policy.max_attempts,
        "base_s": policy.base,
        "multiplier": policy.multiplier,
        "cap_s": policy.cap,
        "jitter": "full" if policy.jitter else "none",
        "respect_retry_after": policy.respect_retry_after,
    }


WAIT_EARLY_S = 0.01
"""How far below its least wait a gap between two attempts may measure (gaps are rounded
to 0.1 ms and timed where the attempts arrive, not where the client slept)."""


def expected_wait(
    policy: RetryPolicy, retry: int, *, retry_after: float | None = None
) -> tuple[float, float]:
    """The least and the most ``policy`` waits before retry number ``retry`` (1 = the
    first), as :meth:`RetryPolicy.delay` draws it: what the dependency asked
    (``retry_after`` above 0, up to the cap) when the policy honours it; else the backoff
    bound, exactly without jitter, anywhere from 0 to it with full jitter."""
    if retry_after is not None and retry_after > 0 and policy.respect_retry_after:
        wait = min(retry_after, policy.cap)
        return wait, wait
    bound = policy.backoff_bound(retry)
    return (0.0 if policy.jitter else bound), bound


def waits_as_expected(gaps: list[float], policy: RetryPolicy, slack: float) -> bool:
    """Each gap between a call's attempts (retry 1 first) within what ``policy`` waits
    before that retry (:func:`expected_wait`): at most ``slack`` above its most (the
    failed attempt's own time) and not below its least."""
    return all(
        lo - WAIT_EARLY_S <= g <= hi + slack
        for g, (lo, hi) in zip(
            gaps, (expected_wait(policy, n) for n in range(1, len(gaps) + 1)), strict=True
        )
    )


def _line(x: Any) -> dict[str, Any]:
    value = json.loads(x) if isinstance(x, str) else x
    return value if isinstance(value, dict) else {}


async def tool_calls(t: Target, tool: str, since: float, prefix: str) -> list[dict[str, Any]]:
    """The ``tool_call`` log lines of ``tool`` since ``since`` (epoch seconds), of the
    tasks whose ids start with ``prefix``."""
    iso = datetime.datetime.fromtimestamp(since, datetime.UTC).isoformat()
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.get(
            f"{t.http.url}/v1/logs", params={"event": "tool_call", "since": iso, "limit": 1000}
        )
    return [
        line
        for line in map(_line, r.json().get("lines", []))
        if line.get("tool") == tool and str(line.get("task_id") or "").startswith(prefix)
    ]


def call_bound(t: Target, tool: str) -> tuple[float, int, float]:
    """How long one call of ``tool`` may take by its own policy: (per-attempt timeout,
    attempts at most, the bound: every attempt to its timeout plus the longest waits
    between them, or the retry policy's deadline when it is shorter)."""
    spec = tool_spec(t, tool)
    retry = spec.retry
    if retry is None:
        return spec.timeout, 1, spec.timeout
    attempts = retry.max_attempts
    waits = sum(retry.backoff_bound(n) for n in range(1, attempts))
    bound = attempts * spec.timeout + waits
    if retry.deadline is not None:
        bound = min(bound, retry.deadline)
    return spec.timeout, attempts, round(bound, 3)


async def hang_tool(t: Target, tool: str, *, tasks: int = 8) -> dict[str, Any]:
    """Black-hole ``tool``'s upstream at its proxy (connections accepted, nothing
    forwarded) while ``tasks`` workload tasks run; each call of the tool must end within
    its policy's bound (each attempt at its timeout; see :func:`call_bound`). Returns
    the evidence (``exercised``: the proxy held a connection and the node logged the
    calls)."""
    proxy = t.tool_fault(tool)
    limit, attempts, bound = call_bound(t, tool)
    held_before = proxy.stats["held"]
    since = time.time()
    inputs = t.workload(tasks, seed=303)
    t.say(f"{tool}: black hole {_at(t, tool)}, {len(inputs)} tasks")
    proxy.set(blackhole=True)
    started = time.monotonic()
    try:
        records = await t.run_all(inputs, prefix=f"eh3-{tool}-", timeout=bound + 60)
    finally:
        proxy.clear()
    held = proxy.stats["held"] - held_before
    lines: list[dict[str, Any]] = []
    if held:

        async def logged() -> bool:
            nonlocal lines
            lines = await tool_calls(t, tool, since - 1, f"eh3-{tool}-")
            return bool(lines)

        await until(logged, timeout=10, every=0.5)  # log batches reach the store
    latencies = sorted(float(x.get("latency_ms") or 0) / 1000 for x in lines)
    outcomes: dict[str, int] = {}
    for x in lines:
        outcomes[str(x.get("outcome"))] = outcomes.get(str(x.get("outcome")), 0) + 1
    longest = latencies[-1] if latencies else None
    return {
        "fault": f"black hole {_at(t, tool)} (attempts accepted, never answered)",
        **t.describe_fault(tool),
        "tasks": len(records),
        "task_statuses": {
            s: sum(r.status == s for r in records) for s in {r.status for r in records}
        },
        "connections_held": held,
        "calls": len(lines),
        "call_outcomes": outcomes,
        "longest_call_s": round(longest, 3) if longest is not None else None,
        "timeout_s": limit,
        "attempts_at_most": attempts,
        "bound_s": bound,
        "held_for_s": round(time.monotonic() - started, 2),
        "exercised": bool(held and lines),
        "ended_within_bound": longest is not None and longest <= bound + HANG_SLACK_S,
    }


async def reaching_input(t: Target, tool: str, *, seed: int, scan: int = 40) -> Any | None:
    """A workload input whose task connects through ``tool``'s proxy, unfaulted: each
    candidate is run once and kept when the proxy saw a connection during it (a generic
    signal, like ``Target.model_inputs``). None when none of ``scan`` does."""
    proxy = t.tool_fault(tool)
    for n, value in enumerate(t.workload(scan, seed=seed)):
        before = proxy.stats["connections"]
        await t.run_all([value], prefix=f"probe-{tool}-{seed}-{n}")
        if proxy.stats["connections"] > before:
            return value
    return None


async def tool_breaker(t: Target, tool: str) -> dict[str, Any]:
    """EH-2 on a proxied tool: on a fresh node (closed breakers), every connection to its
    upstream reset at the proxy, one task at a time, until a task's call of the tool no
    longer reaches the proxy (its breaker rejects without trying); then the proxy
    cleared, a task a second until a call reaches the upstream again and succeeds
    (half-open trials, then closed). ``status`` in the result: complete, failed or
    not-run."""
    spec = tool_spec(t, tool)
    config = spec.breaker
    evidence: dict[str, Any] = {
        "fault": f"every attempt reset {_at(t, tool)}",
        **t.describe_fault(tool),
        "breaker": breaker_evidence(config),
    }
    value = await reaching_input(t, tool, seed=801)
    if value is None:
        evidence["status"] = "not-run"
        evidence["why"] = f"none of 40 workload inputs made a task call {tool}"
        return evidence
    t.say(f"{tool}: a fresh node (closed breakers), then every attempt reset {_at(t, tool)}")
    await t.restart()
    proxy = t.tool_fault(tool)
    reached: list[int] = []
    opened = False
    proxy.set(reset=True)
    try:
        for n in range(3 * config.minimum_calls if config is not None else 8):
            before = proxy.stats["connections"]
            await t.run_all([value], prefix=f"eh2-{tool}-open-{n}")
            reached.append(proxy.stats["connections"] - before)
            if reached[-1] == 0:
                opened = True
                break
    finally:
        proxy.clear()
    evidence["connections_per_task_while_refused"] = reached
    evidence["opened"] = opened
    if not opened or config is None:
        evidence["status"] = "failed"
        return evidence
    t.say(f"{tool}: upstream back, a task a second until its breaker lets a call through")
    since = time.time()
    started = time.monotonic()
    recovered = False
    async with asyncio.timeout(config.wait_duration_in_open + 30):
        n = 0
        while not recovered:
            await asyncio.sleep(1.0)  # the open period runs on the agents' clocks
            n += 1
            before = proxy.stats["connections"]
            await t.run_all([value], prefix=f"eh2-{tool}-recover-{n}")
            recovered = proxy.stats["connections"] > before
    evidence["reached_again_after_s"] = round(time.monotonic() - started, 2)
    ok_calls: list[dict[str, Any]] = []

    async def succeeded() -> bool:
        nonlocal ok_calls
        calls = await tool_calls(t, tool, since - 1, f"eh2-{tool}-recover-")
        ok_calls = [x for x in calls if x.get("outcome") == "ok"]
        return bool(ok_calls)

    evidence["call_succeeded_after_recovery"] = await until(succeeded, timeout=10, every=0.5)
    evidence["calls_ok_after_recovery"] = len(ok_calls)
    evidence["status"] = "complete" if evidence["call_succeeded_after_recovery"] else "failed"
    return evidence


RETRY_SLACK_S = 0.25
"""How far past its longest wait a retry may arrive (the failed attempt's own time),
beyond the scheduling delay measured meanwhile (:func:`scheduling_lag`)."""


async def tool_retries(t: Target, tool: str) -> dict[str, Any]:
    """EH-1 on a proxied tool: on a fresh node (a closed breaker), every connection to
    its upstream reset at the proxy (a retryable connection error) during one task that
    calls it; the connections of its first call are its attempts, their spacing the
    waits. ``status`` in the result: complete, failed or not-run."""
    spec = tool_spec(t, tool)
    policy = spec.retry
    evidence: dict[str, Any] = {
        "fault": f"every attempt reset {_at(t, tool)} (retryable)",
        **t.describe_fault(tool),
        "policy": retry_evidence(policy),
    }
    value = await reaching_input(t, tool, seed=701)
    if value is None:
        return {**evidence, "status": "not-run", "why": f"no workload input called {tool}"}
    t.say(f"{tool}: a fresh node (a closed breaker), then every attempt reset {_at(t, tool)}")
    await t.restart()
    proxy = t.tool_fault(tool)
    mark = len(proxy.accepted)
    proxy.set(reset=True)
    try:
        async with scheduling_lag() as lag:
            [record] = await t.run_all([value], prefix=f"eh1-{tool}-")
    finally:
        proxy.clear()
    arrivals = list(proxy.accepted)[mark:]
    attempts = policy.max_attempts if policy is not None else 1
    first = arrivals[:attempts]
    gaps = [round(b - a, 4) for a, b in itertools.pairwise(first)]
    expected = [list(expected_wait(policy, n)) for n in range(1, len(gaps) + 1)] if policy else []
    evidence.update(
        {
            "task": record.status,
            "connections": len(arrivals),
            "attempts_of_first_call": len(first),
            "gaps_s": gaps,
            "backoff_bounds_s": [hi for _, hi in expected],
            "expected_waits_s": expected,
            "scheduling_lag_s": round(lag[0], 4),
        }
    )
    if policy is None:
        # not retried: right for a side effect whose target does not dedupe (a retry
        # could deliver twice), wrong for any other call
        evidence["tried_once_by_design"] = spec.side_effect and not spec.deduplicates
        ok = len(first) == 1 and evidence["tried_once_by_design"]
    else:
        ok = len(first) == attempts and waits_as_expected(gaps, policy, RETRY_SLACK_S + lag[0])
    evidence["status"] = "complete" if ok else "failed"
    return evidence


async def model_and_tools(
    t: Target,
    model_part: Callable[[Target], Awaitable[Outcome]],
    tool_part: Callable[[Target, str], Awaitable[dict[str, Any]]],
    describe: Callable[[dict[str, Any]], str],
    fix: str,
) -> Outcome:
    """An item that faults the app's primary model and each proxied tool: the model's
    part alone when no tool is proxied, else both, in one verdict (:func:`with_tools`).
    ``describe`` says what a tool's part measured (its evidence); ``fix`` ends the
    remediation of a tool whose part failed."""
    tools = t.fault_tools()
    if not tools:
        hint = unproxied_hint(t)
        try:
            alone = await model_part(t)
        except NotExercised as exc:
            if hint is None:
                raise
            raise NotExercised(f"{exc}; {hint[0]}", fix=hint[1]) from exc
        if alone.status != "not-run" or hint is None:
            return alone
        why = f"{alone.evidence.get('why', alone.measured)}; {hint[0]}"
        return dataclasses.replace(
            alone, evidence={**alone.evidence, "why": why}, remediation=hint[1]
        )
    try:
        model = await model_part(t)
    except NotExercised as exc:
        model = Outcome("not-run", {"why": str(exc)})
    per_tool = {name: await tool_part(t, name) for name in tools}
    return with_tools(model, per_tool, {n: describe(v) for n, v in per_tool.items()}, fix)


def unproxied_hint(t: Target) -> tuple[str, str] | None:
    """Why the app's tools gave an item that faults dependencies nothing to fault, and what
    to declare (None when the app has no tool): verify faults a tool's dependency at a
    fault proxy in front of it or at its double; a tool declared ``none`` may not be
    faulted, a ``sim:`` one is faulted at the simulated service only by GD-2, SM-4 and
    LC-2."""
    modes = t.tool_modes()
    if not modes:
        return None
    said = {"none": "declared 'none' (may not be faulted)", "sim": "on a simulated service"}
    each = ", ".join(f"{n}: {said.get(mode, mode)}" for n, (mode, _) in sorted(modes.items()))
    return (
        f"and no tool has a double or a fault proxy, where verify faults a tool ({each})",
        "give a tool a double (@tool(double=fn)) to fault its calls, or declare a tool that "
        "reaches a service over TCP as 'proxy:<VAR>=<url>' in the verify profile's tools "
        "to fault it on its real code path (docs/verify.md, Tools behind a fault proxy); "
        "nothing to add if the app calls no model and has no such tool",
    )


def with_tools(
    model: Outcome, per_tool: dict[str, dict[str, Any]], measured: dict[str, str], fix: str
) -> Outcome:
    """One verdict from the model's part (``not-run`` when the app has no simulated model)
    and each proxied tool's (``status`` in its evidence): failed when one failed, not-run
    when none ran, partial when a tool was not reached, else complete."""
    evidence: dict[str, Any] = {**model.evidence, "model_status": model.status, "tools": per_tool}
    ran: dict[str, str] = {"model": model.status} if model.status != "not-run" else {}
    ran |= {n: str(v["status"]) for n, v in per_tool.items() if v["status"] != "not-run"}
    text = "; ".join(f"{n}: {m}" for n, m in measured.items())
    if model.status != "not-run":
        text = f"model: {model.measured or model.status}; {text}"
    if not ran:
        return Outcome(
            "not-run",
            {**evidence, "why": f"{model.evidence.get('why')}; no faulted tool was called"},
            "make the workload reach the tools with a double or a fault proxy",
            text,
        )
    failed = [n for n, status in ran.items() if status == "failed"]
    if failed:
        fixes = [model.remediation or ""] if "model" in failed else []
        fixes += [f"{n} {fix}" for n in failed if n != "model"]
        return Outcome("failed", evidence, "; ".join(f for f in fixes if f), text)
    unreached = [n for n, v in per_tool.items() if v["status"] == "not-run"]
    if unreached:
        return Outcome(
            "partial",
            evidence,
            f"the workload never called {', '.join(unreached)}: add inputs that reach them",
            text,
        )
    return Outcome("complete", evidence, measured=text)


def prolonged(t: Target, component: str | None) -> list[tuple[str, str]]:
    """(severity, status) of each ProlongedDegradation notice delivered for ``component``
    (of any component when None)."""
    return [
        (str(b.get("severity")), str(b.get("status")))
        for b in t.receiver.bodies
        if isinstance(b, dict)
        and b.get("alertname") == "ProlongedDegradation"
        and (component is None or (b.get("labels") or {}).get("component") == component)
    ]


async def degradation_record(
    t: Target, component: str, *, scope: str | None, since: float | None
) -> tuple[dict[str, Any], bool]:
    """What GD-3 reads once a held degradation of ``component`` is over: the notices
    (:func:`prolonged` of ``scope``), the ``degradation_started``/``_ended`` log lines
    (of ``scope``, any component when None; since ``since``, epoch seconds, or all) and
    the node's ``stalwart_degradation_seconds_total`` lines of ``component``. True when
    it was alerted warning then critical, resolved, logged ended, and timed."""
    notices = prolonged(t, scope)
    params: dict[str, str] = {}
    if since is not None:
        params["since"] = datetime.datetime.fromtimestamp(since, datetime.UTC).isoformat()
    logged: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=5) as http:
        for event in ("degradation_started", "degradation_ended"):
            body = (
                await http.get(f"{t.http.url}/v1/logs", params={"event": event, **params})
            ).json()
            logged += [
                x
                for x in map(_line, body.get("lines", []))
                if scope is None or x.get("component") == scope
            ]
        metrics = (await http.get(f"{t.http.url}/metrics")).text
    seconds = [
        line
        for line in metrics.splitlines()
        if line.startswith("stalwart_degradation_seconds_total{") and component in line
    ]
    ended = [x for x in logged if x.get("event") == "degradation_ended"]
    # warning fires before critical (a warning that fired again while the degradation was
    # held, as an evaluation on a loaded machine may see, is no failure of the app)
    warned, critical = ("warning", "firing"), ("critical", "firing")
    order_ok = (
        warned in notices
        and critical in notices
        and notices.index(warned) < notices.index(critical)
    )
    record = {
        "notifications": notices,
        "logged": [x.get("event") for x in logged],
        "durations_s": [x.get("duration_s") for x in ended],
        "duration_metric": seconds,
    }
    ok = order_ok and ("critical", "resolved") in notices and bool(ended) and bool(seconds)
    return record, ok


async def tool_degradation(t: Target, tool: str) -> dict[str, Any]:
    """GD-3 on a proxied tool: on a fresh node, every connection to its upstream reset
    at the proxy while a task a second calls it, until the ProlongedDegradation alert
    for ``tool:<name>`` goes critical (or 30 s); then the proxy cleared and a task a
    second until the alert resolves (the tool's breaker lets a trial through after its
    open period). The degradation must be logged with its duration, counted, alerted
    warning then critical, and resolved. ``status`` in the result."""
    component = f"tool:{tool}"
    evidence: dict[str, Any] = {
        "fault": f"every attempt reset {_at(t, tool)}, held",
        **t.describe_fault(tool),
        "component": component,
    }
    value = await reaching_input(t, tool, seed=1202)
    if value is None:
        return {**evidence, "status": "not-run", "why": f"no workload input called {tool}"}
    t.say(f"{tool}: a fresh node, then its upstream reset and held past the alert's for-times")
    await t.restart()
    since = time.time()
    proxy = t.tool_fault(tool)
    started = time.monotonic()
    proxy.set(reset=True)
    n = 0
    try:
        deadline = time.monotonic() + 30
        while ("critical", "firing") not in prolonged(t, component) and (
            time.monotonic() < deadline
        ):
            n += 1
            await t.run_all([value], prefix=f"gd3-{tool}-hold-{n}")
            await asyncio.sleep(0.5)  # the degradation is held: the fault stays on
    finally:
        proxy.clear()
    evidence["held_s"] = round(time.monotonic() - started, 2)
    spec = tool_spec(t, tool)
    wait = spec.breaker.wait_duration_in_open if spec.breaker is not None else 0.0
    deadline = time.monotonic() + wait + 30
    while ("critical", "resolved") not in prolonged(t, component) and (time.monotonic() < deadline):
        n += 1
        await t.run_all([value], prefix=f"gd3-{tool}-back-{n}")
        await asyncio.sleep(0.5)
    record, ok = await degradation_record(t, component, scope=component, since=since - 1)
    evidence.update(record)
    evidence["status"] = "complete" if ok else "failed"
    return evidence
