"""Faults on proxied tools' upstreams (profile mode ``proxy:``), applied at the fault
proxy verify put in front of each: what EH-3 (a black hole: each call must end by its
timeout), GD-2 (resets: the tool's own code meets a dead service) and SM-4 (latency:
side effects in flight longer while agents are killed) do to them, measured from the
proxy's counters and the node's log store (each tool call logs a ``tool_call`` line
with its outcome and latency)."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import httpx

from stalwart.verify._poll import until
from stalwart.verify._target import Target

__all__ = ["HANG_SLACK_S", "call_bound", "hang_tool", "tool_calls"]

HANG_SLACK_S = 2.0
"""How far past its timeout a hung call may end (scheduling on a loaded machine)."""


def _line(x: Any) -> dict[str, Any]:
    value = json.loads(x) if isinstance(x, str) else x
    return value if isinstance(value, dict) else {}


async def tool_calls(t: Target, tool: str, since: float) -> list[dict[str, Any]]:
    """The ``tool_call`` log lines of ``tool`` since ``since`` (epoch seconds)."""
    iso = datetime.datetime.fromtimestamp(since, datetime.UTC).isoformat()
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.get(
            f"{t.http.url}/v1/logs", params={"event": "tool_call", "since": iso, "limit": 1000}
        )
    return [line for line in map(_line, r.json().get("lines", [])) if line.get("tool") == tool]


def call_bound(t: Target, tool: str) -> tuple[float, int, float]:
    """How long one call of ``tool`` may take by its own policy: (per-attempt timeout,
    attempts at most, the bound: every attempt to its timeout plus the longest waits
    between them, or the retry policy's deadline when it is shorter)."""
    spec = next(x for a in t.app.agents for x in a.tools if x.name == tool)
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
    proxy = t.proxy(tool)
    limit, attempts, bound = call_bound(t, tool)
    held_before = proxy.stats["held"]
    since = time.time()
    inputs = t.workload(tasks, seed=303)
    t.say(f"{tool}: black hole at its fault proxy, {len(inputs)} tasks")
    proxy.set(blackhole=True)
    started = time.monotonic()
    try:
        records = await t.run_all(inputs, prefix=f"eh3-{tool}", timeout=bound + 60)
    finally:
        proxy.clear()
    held = proxy.stats["held"] - held_before
    lines: list[dict[str, Any]] = []
    if held:

        async def logged() -> bool:
            nonlocal lines
            lines = await tool_calls(t, tool, since - 1)
            return bool(lines)

        await until(logged, timeout=10, every=0.5)  # log batches reach the store
    latencies = sorted(float(x.get("latency_ms") or 0) / 1000 for x in lines)
    outcomes: dict[str, int] = {}
    for x in lines:
        outcomes[str(x.get("outcome"))] = outcomes.get(str(x.get("outcome")), 0) + 1
    longest = latencies[-1] if latencies else None
    return {
        "fault": "black hole at the fault proxy (connections accepted, nothing forwarded)",
        **t.proxies.describe(tool),
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
