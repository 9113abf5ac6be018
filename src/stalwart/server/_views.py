"""What the API and the dashboard show: the agent table and the live summary.

Read from the running node (its supervision tree and process host), the metrics
registry and the kernel (per-process resources); nothing here changes state.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Iterator
from typing import Any, Protocol

from stalwart.observe import REGISTRY, AlertEvaluator, EventBus, Readiness, sample_process
from stalwart.resilience import BreakerState
from stalwart.runtime import AgentProcess, Runtime, Supervisor

__all__ = ["NodeLike", "Summary", "agent_processes", "agent_rows", "agents", "metric_sum"]


class NodeLike(Protocol):
    """What the server needs of a node (``stalwart.node.Node`` is one)."""

    id: str
    events: EventBus
    runtime: Runtime
    readiness: Readiness

    @property
    def ready(self) -> bool: ...


def _walk(sup: Supervisor, path: str) -> Iterator[tuple[str, Any, Any]]:
    for info in sup.which_children():
        child = sup.child(info.id)
        if isinstance(child, Supervisor):
            yield from _walk(child, f"{path}/{info.id}")
        else:
            yield path, info, child


def agent_rows(runtime: Runtime) -> list[dict[str, Any]]:
    """The tree's workers without resource figures (walks live state: call on the loop)."""
    if runtime.root is None:
        return []
    out = []
    for path, info, proc in _walk(runtime.root, runtime.root.id):
        live = isinstance(proc, AgentProcess)
        out.append(
            {
                "name": info.id,
                "supervisor": path,
                "state": proc.state if live else "down",
                "pid": info.pid,
                "incarnation": proc.incarnation if live else None,
                "restarts": info.restarts,
                "uptime_s": round(time.monotonic() - proc.started_at, 1) if live else None,
                "cpu_seconds": None,
                "rss_bytes": None,
                "open_fds": None,
                "connections": None,
            }
        )
    return out


def add_resources(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill CPU, memory, fds and connections from the kernel (blocking: run in a thread)."""
    for row in rows:
        if row["pid"]:
            sample = sample_process(row["pid"])
            if sample is not None:
                row.update(sample)
    return rows


async def agents(runtime: Runtime) -> list[dict[str, Any]]:
    """Every worker of the tree: name, supervisor, state, pid, incarnation, restarts, resources."""
    return await asyncio.to_thread(add_resources, agent_rows(runtime))


def agent_processes(runtime: Runtime) -> list[tuple[str, int]]:
    """``(agent, pid)`` of every live agent process (for the process metrics collector)."""
    return [(p.name, p.pid) for p in runtime.host.processes() if p.exit is None]


def metric_sum(name: str, **match: str) -> float:
    """Sum of every sample called ``name`` whose labels include ``match``."""
    total = 0.0
    for family in REGISTRY.collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                total += s.value
    return total


_WANTED = (
    "stalwart_tasks_",
    "stalwart_model_",
    "stalwart_breaker_state",
    "stalwart_degradation_events",
)


class _Totals:
    """One pass over the registry's stalwart series the dashboard shows (not per number)."""

    def __init__(self) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = []
        with REGISTRY._lock:
            collectors = list(REGISTRY._collector_to_names.items())
        for collector, names in collectors:
            if not any(n.startswith(_WANTED) for n in names):
                continue  # e.g. the per-process collector: no /proc reads for the summary
            for family in collector.collect():
                for s in family.samples:
                    self.samples.append((s.name, s.labels, s.value))

    def sum(self, name: str, **match: str) -> float:
        return sum(
            v for n, labels, v in self.samples
            if n == name and all(labels.get(k) == x for k, x in match.items())
        )  # fmt: skip

    def count(self, name: str, value: float) -> int:
        return sum(1 for n, _, v in self.samples if n == name and v == value)

    def breakers(self) -> list[dict[str, str]]:
        """Every breaker not closed, with its state label (``forced_open``...)."""
        known = {float(state.value): state.label for state in BreakerState}
        rows = [
            {"dependency": labels.get("dependency", ""), "state": known.get(v, str(v))}
            for n, labels, v in self.samples
            if n == "stalwart_breaker_state" and v != 0
        ]
        return sorted(rows, key=lambda r: r["dependency"])


class Summary:
    """Builds the dashboard's numbers; keeps the cost baseline of the current UTC day."""

    def __init__(self, node: NodeLike, evaluator: AlertEvaluator | None) -> None:
        self.node = node
        self.evaluator = evaluator
        self._day = ""
        self._cost_at_day_start = 0.0

    def _cost_today(self, cost: float) -> float:
        day = datetime.datetime.now(datetime.UTC).date().isoformat()
        if day != self._day:
            self._day, self._cost_at_day_start = day, (cost if self._day else 0.0)
        return cost - self._cost_at_day_start

    async def build(self) -> dict[str, Any]:
        """The numbers: tree state read on the loop, metrics and resources in a thread."""
        rows = agent_rows(self.node.runtime)
        recent_events = self.node.events.recent()
        active: list[dict[str, Any]] = []
        alerts_recent: list[dict[str, Any]] = []
        if self.evaluator is not None:
            active = self.evaluator.active()
            alerts_recent = [n.as_dict() for n in self.evaluator.recent_notices(20)]
        ready = self.node.ready
        return await asyncio.to_thread(
            self._build, rows, recent_events, active, alerts_recent, ready
        )

    def _build(
        self,
        rows: list[dict[str, Any]],
        recent_events: list[Any],
        active: list[dict[str, Any]],
        alerts_recent: list[dict[str, Any]],
        ready: bool,
    ) -> dict[str, Any]:
        table = add_resources(rows)
        t = _Totals()
        completed = t.sum("stalwart_tasks_finished_total", outcome="completed")
        failed = t.sum("stalwart_tasks_finished_total", outcome="failed")
        requests = t.sum("stalwart_model_requests_total")
        errors = t.sum("stalwart_model_errors_total")
        lat_sum = t.sum("stalwart_model_request_duration_seconds_sum")
        lat_count = t.sum("stalwart_model_request_duration_seconds_count")
        # open or forced open by an operator: both reject every call
        breakers_open = t.count("stalwart_breaker_state", 1.0) + t.count(
            "stalwart_breaker_state", 4.0
        )
        degradations = [
            {"ts": e.ts, "event": e.name, **{k: str(v) for k, v in e.fields.items()}}
            for e in recent_events
            if e.name.startswith(("degradation", "model_fallback", "fallback", "tool_unavailable"))
        ][-20:]
        return {
            "node": self.node.id,
            "ready": ready,
            "ts": time.time(),
            "business": {
                "tasks_submitted": t.sum("stalwart_tasks_submitted_total"),
                "tasks_completed": completed,
                "tasks_failed": failed,
                "success_rate": (completed / (completed + failed)) if completed + failed else None,
                "cost_today_usd": round(
                    self._cost_today(t.sum("stalwart_model_cost_usd_total")), 6
                ),
            },
            "system": {
                "model_requests": requests,
                "model_errors": errors,
                "model_error_rate": (errors / requests) if requests else None,
                "model_latency_avg_s": (lat_sum / lat_count) if lat_count else None,
                "breakers_open": breakers_open,
                "breakers": t.breakers(),
                "fallbacks": t.sum("stalwart_degradation_events_total"),
                # this node's tree (the registry may hold other runtimes' series in tests)
                "restarts": sum(a["restarts"] for a in table),
                "agents_running": sum(1 for a in table if a["state"] == "running"),
            },
            "agents": table,
            "alerts": {"active": active, "recent": alerts_recent},
            "degradations": degradations,
        }
