"""SE-4: the app's spend limits per task, per agent and per day, driven over on the live node.

The limits tested are the app's own, enforced by its own agent processes. A day's
limit is far more than a verification can spend, so the ledger's counters (in the
verify run's store: tables ``guard_spend``, keyed by scope, key and UTC day) are
*seeded*: spend is placed on a counter so that its limit is a few model calls
away, then concurrent tasks spend the rest for real until the agents refuse the
call that could cross it. The room left is sized from a probe: a task whose own
counter is seeded to its limit is refused at its first call, and the refusal says
what that call's worst case was. Each seed is taken back after its phase.

Per limit kind the evidence shows the limit, the seed, the spend the counter
ended with (never above the limit), the tasks stopped with ``BudgetExceeded``
naming that limit, the ``budget_exceeded`` stop events in the node's log store,
and the ``BudgetLimit`` alerts (warning and critical) the node's evaluator
delivered to the verify webhook.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import time
from typing import Any

import httpx

from stalwart.agent import App
from stalwart.durable import TaskRecord
from stalwart.guard import Budget, SpendLedger
from stalwart.observe import catalog
from stalwart.verify._poll import until
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import Target

KINDS = ("task", "agent", "day")
TASKS = {"task": 6, "agent": 16, "day": 16}
"""Most tasks driven at each limit, submitted at once; a shared limit gets no more than
the agent runs at a time (``max_tasks``), so they meet it together. A call refused
while reservations of calls killed mid-flight by earlier checks still count (until
the ledger's ``stale_after``) first waits ``Budget.wait_s`` for them to settle."""
MET_TASKS = 2
"""Tasks run once a phase has met its limit exactly: each must be refused at once."""
ROOM_CALLS = {"task": 0.9, "agent": 1.1, "day": 1.1}
"""Room left under each limit after seeding, in worst-case model calls (the probe's).
A call is made only if its worst case (prompt plus ``max_tokens`` of answer, 30 to 100
times what a call usually costs) fits: a task's own limit stops it at its first call
(calls of the same task differ by a few percent; with a whole call of room, the
expenses example's tasks ended within it), a shared one once the phase's calls have
spent a tenth of one. A phase that stopped no task and kept its spend within the limit
(its tasks ended before a call needed more than the room) is reported as not exercised,
not as a limit that failed: nothing crossed it."""
ALERT_WAIT_S = 10.0
"""Agents ship their gauges with their heartbeats; the evaluator runs every 0.5 s."""
_WORST = re.compile(r"worst case \$([0-9.]+)")


def _limits(budget: Budget) -> dict[str, float | None]:
    return {kind: getattr(budget, f"{kind}_usd") for kind in KINDS}


def _kinds(budget: Budget) -> list[str]:
    return [k for k, v in _limits(budget).items() if v is not None]


def _key(kind: str, agent: str) -> str:
    return agent if kind == "agent" else "*"


def _stopped_by(record: TaskRecord) -> str | None:
    """The limit kind a task was stopped by (None: not stopped by a budget)."""
    outcome = record.outcome if isinstance(record.outcome, dict) else {}
    if record.status != "failed" or outcome.get("type") != "BudgetExceeded":
        return None
    message = str(outcome.get("message", ""))
    return next((kind for kind in KINDS if f"the {kind} budget" in message), "unknown")


def _budget_alerts(t: Target, mark: int, kind: str) -> list[tuple[str, str]]:
    return [
        (str(b.get("severity")), str(b.get("status")))
        for b in t.receiver.bodies[mark:]
        if isinstance(b, dict)
        and b.get("alertname") == "BudgetLimit"
        and (b.get("labels") or {}).get("scope") == kind
    ]


async def _stop_events(t: Target, since: float) -> list[dict[str, Any]]:
    iso = datetime.datetime.fromtimestamp(since, datetime.UTC).isoformat()
    async with httpx.AsyncClient(timeout=5) as http:
        body = (
            await http.get(
                f"{t.http.url}/v1/logs",
                params={"event": "budget_exceeded", "since": iso, "limit": 1000},
            )
        ).json()
    return [json.loads(x) if isinstance(x, str) else dict(x) for x in body.get("lines", [])]


@dataclasses.dataclass
class _Drive:
    """One SE-4 run: the agent, its limits, the ledger the agents write."""

    t: Target
    agent: str
    ledger: SpendLedger
    concurrency: int
    inputs: list[Any]
    used: int = 0
    marks: dict[str, int] = dataclasses.field(default_factory=dict)
    """Per limit kind: how many webhook bodies had arrived when its probe or phase began
    (its alerts are those delivered after)."""

    def next_inputs(self, count: int) -> list[Any]:
        chosen = [self.inputs[(self.used + n) % len(self.inputs)] for n in range(count)]
        self.used += count
        return chosen

    async def run(self, ids: list[str]) -> list[TaskRecord]:
        values = self.next_inputs(len(ids))
        for task_id, value in zip(ids, values, strict=True):
            await self.t.tasks.submit(self.agent, value, task_id=task_id, seed=self.t.seed)
        return [await self.t.tasks.wait(i, timeout=120) for i in ids]

    async def probe(self, kind: str, limit: float) -> tuple[float | None, dict[str, Any]]:
        """One task with ``kind``'s counter seeded to its limit: refused at its first call,
        the refusal says what that call's worst case was."""
        task_id = f"se4-probe-{kind}"
        key = task_id if kind == "task" else _key(kind, self.agent)
        # the probe's refusal is a stop at this limit too: its alerts count for the phase
        self.marks[kind] = len(self.t.receiver.bodies)
        seed = max(0.0, limit - self.ledger.spent(kind, key) - self.ledger.reserved(kind, key))
        self.ledger.add_spent(kind, key, seed)
        try:
            [record] = await self.run([task_id])
        finally:
            self.ledger.add_spent(kind, key, -seed)
        message = str((record.outcome or {}).get("message", ""))
        found = _WORST.search(message)
        facts: dict[str, Any] = {
            "task": task_id,
            "limit_kind": kind,
            "status": record.status,
            "stopped_by": _stopped_by(record),
        }
        worst = float(found.group(1)) if found and _stopped_by(record) == kind else None
        facts["worst_case_call_usd"] = worst
        return worst, facts

    async def phase(self, kind: str, limit: float, worst: float) -> dict[str, Any]:
        """Seed ``kind``'s counter to a few calls under ``limit``; drive tasks over it."""
        t = self.t
        room = ROOM_CALLS[kind] * worst
        count = TASKS[kind] if kind == "task" else max(4, min(TASKS[kind], self.concurrency))
        ids = [f"se4-{kind}-{n:02d}" for n in range(count)]
        seeds: dict[str, float] = {}
        keys = ids if kind == "task" else [_key(kind, self.agent)]
        before = {key: self.ledger.spent(kind, key) for key in keys}
        # reservations of calls killed mid-flight by earlier checks hold budget for an
        # hour (Budget ledger's stale_after): the room is left beside them
        held = {key: self.ledger.reserved(kind, key) for key in keys}
        for key in keys:
            seeds[key] = max(0.0, limit - room - before[key] - held[key])
            self.ledger.add_spent(kind, key, seeds[key])
        since = time.time()
        mark = self.marks.setdefault(kind, len(t.receiver.bodies))
        met_ids = [f"se4-{kind}-met-{n}" for n in range(MET_TASKS)]
        tops: dict[str, float] = {}
        try:
            records = await self.run(ids)
            spent = {key: self.ledger.spent(kind, key) for key in keys}
            # the limit met exactly: every further call must be refused, at once (and the
            # gauge the agent ships ends at 1: a settle that followed a refusal within one
            # heartbeat could have hidden it from the node)
            for key in met_ids if kind == "task" else keys:
                tops[key] = max(0.0, limit - self.ledger.spent(kind, key))
                self.ledger.add_spent(kind, key, tops[key])
            met = await self.run(met_ids)
        finally:
            for key in {**seeds, **tops}:
                taken = seeds.get(key, 0.0) + tops.get(key, 0.0)
                self.ledger.add_spent(kind, key, -taken)  # the seeds are taken back
        stopped = [r.id for r in records if _stopped_by(r) == kind]
        await until(
            lambda: (
                {("warning", "firing"), ("critical", "firing")}
                <= set(_budget_alerts(t, mark, kind))
            ),
            timeout=ALERT_WAIT_S,
        )
        events: list[dict[str, Any]] = []

        async def logged() -> bool:
            events[:] = [e for e in await _stop_events(t, since) if e.get("scope") == kind]
            return len(events) >= len(stopped)

        await until(logged, timeout=ALERT_WAIT_S, every=0.3)
        top = max(spent.values())
        return {
            "worst_case_call_usd": worst,
            "limit_usd": limit,
            "room_left_usd": round(room, 6),
            "seeded_usd": round(sum(seeds.values()), 6),
            "held_by_earlier_calls_usd": round(sum(held.values()), 6),
            "spent_usd": round(top, 6),
            "real_spend_usd": round(
                sum(spent.values()) - sum(seeds.values()) - sum(before.values()), 6
            ),
            "within_limit": all(v <= limit + 1e-9 for v in spent.values()),
            "tasks": len(records),
            "completed": sum(r.status == "succeeded" for r in records),
            "stopped": len(stopped),
            "stopped_tasks": stopped[:8],
            "other_failures": [
                {"task": r.id, "outcome": str(r.outcome)[:200]}
                for r in records
                if r.status != "succeeded" and _stopped_by(r) != kind
            ],
            "stop_events": len(events),
            "tasks_at_the_met_limit": len(met),
            "refused_at_the_met_limit": sum(_stopped_by(r) == kind for r in met),
            "alerts": _budget_alerts(t, mark, kind),
        }


def _criteria(p: dict[str, Any]) -> dict[str, bool]:
    """Each point of one limit's phase, measured (the report shows which one failed)."""
    alerts = set(map(tuple, p["alerts"]))
    return {
        "spend_within_limit": bool(p["within_limit"]),
        "agent_stopped": p["stopped"] > 0 and p["stop_events"] >= 1,
        "every_task_at_the_met_limit_refused": (
            p["refused_at_the_met_limit"] == p["tasks_at_the_met_limit"]
        ),
        "warning_alert_fired": ("warning", "firing") in alerts,
        "critical_alert_fired": ("critical", "firing") in alerts,
    }


def _unreached(p: dict[str, Any]) -> bool:
    """The phase's tasks stopped nothing and spent within the limit: they ended before a
    call needed more than the room, so the stop was not exercised (nothing crossed)."""
    return not p["stopped"] and bool(p["within_limit"])


def _phase_ok(p: dict[str, Any]) -> bool:
    """The limit held: the mechanism's points (tasks failing for other reasons are no
    failure of the limit; they make the item partial, see spend_limits)."""
    return all(_criteria(p).values())


def _spenders(app: App) -> list[Any]:
    """The agents that call models (an LLM agent, or a Python agent given a chain)."""
    return [a for a in app.agents if getattr(a, "model", None)]


@check(
    "SE-4",
    criterion=(
        "each spend limit stops the agent before it is crossed; warning and critical alerts "
        "fire and resolve"
    ),
    does="drives an agent over its per-task, per-agent and per-day limits",
    estimate_s=60,
)
async def spend_limits(t: Target) -> Outcome:
    spenders = _spenders(t.service.app)
    if not spenders:
        return Outcome(
            "not-run",
            {"why": "no agent of the app calls a model: there is no spend to limit"},
            "nothing to drive over a limit: SE-4 applies to agents that call models",
            measured="no model-calling agents",
        )
    evidence: dict[str, Any] = {
        "limits": {a.name: _limits(a.security.budget) for a in spenders},
    }
    limited = [a for a in spenders if a.security.budget.limited]
    if not limited:
        return Outcome(
            "failed",
            evidence,
            "set spend limits on every agent that calls a model: security=Security(budget="
            "Budget(task_usd=..., agent_usd=..., day_usd=...)) (docs/security.md, Budgets)",
        )
    # the agent with the most limit kinds set is driven over each of them
    agent = max(limited, key=lambda a: len(_kinds(a.security.budget)))
    budget: Budget = agent.security.budget
    store_url = t.service.store_url
    evidence["driven_agent"] = agent.name
    if budget.ledger is not None and budget.ledger != store_url:
        return Outcome(
            "partial",
            evidence,
            f"agent {agent.name!r} keeps its spend in a ledger of its own (Budget.ledger): "
            "stalwart verify only seeds the counters of the store it created; leave "
            "Budget.ledger unset (the app's store) to have its limits driven over",
        )
    evidence["ledger"] = "the verify run's store (tables guard_spend, guard_reservations)"
    evidence["wait_s"] = budget.wait_s
    evaluator = t.http.evaluator
    assert evaluator is not None
    # budget ratios left in this process by earlier runs would read as this node's
    catalog.BUDGET_USED_RATIO.clear()
    await until(lambda: not any(a["name"] == "BudgetLimit" for a in evaluator.active()), timeout=10)
    ledger = SpendLedger(store_url)
    drive = _Drive(t, agent.name, ledger, agent.max_tasks, t.workload(64, seed=2101))
    try:
        kinds = _kinds(budget)
        worst, probe = await drive.probe(kinds[0], float(_limits(budget)[kinds[0]] or 0.0))
        evidence["probe"] = probe
        if worst is None:
            return Outcome(
                "failed",
                evidence,
                f"agent {agent.name!r} was not stopped at its spent {kinds[0]} limit (the probe "
                f"task {probe['status']}, stopped by {probe['stopped_by']}): each model call "
                "must reserve its worst case first, and refuse to run past a limit "
                "(docs/security.md, Budgets)",
            )
        phases: dict[str, Any] = {}
        for kind in kinds:
            phases[kind] = await drive.phase(kind, float(_limits(budget)[kind] or 0.0), worst)
        evidence["per_limit"] = phases
        # the seeds are back: a task settles real ratios, and every alert resolves
        await drive.run(["se4-after"])

        def resolved() -> dict[str, bool]:
            return {
                k: ("critical", "resolved") in _budget_alerts(t, drive.marks[k], k) for k in kinds
            }

        # (an agent's gauge reads 1 for the ledger's hold after its last refusal)
        await until(
            lambda: all(resolved().values()), timeout=ALERT_WAIT_S + SpendLedger.REFUSAL_HOLD_S
        )
        evidence["alerts_resolved_after_seeds_taken_back"] = resolved()
    finally:
        ledger.close()
    missing = [k for k in KINDS if k not in phases]
    unlimited = [a.name for a in spenders if not a.security.budget.limited]
    criteria = {k: _criteria(p) for k, p in phases.items()}
    evidence["criteria_per_limit"] = criteria
    unreached = [k for k, p in phases.items() if _unreached(p)]
    failed = [
        k
        for k, p in phases.items()
        if not _phase_ok(p)
        and not (k in unreached and all(v for n, v in criteria[k].items() if n != "agent_stopped"))
    ]
    others = {k: p["other_failures"] for k, p in phases.items() if p["other_failures"]}
    measured = "; ".join(
        f"{k}: " + ", ".join(name for name, held in c.items() if not held) + " unmet"
        if not all(c.values())
        else f"{k}: held and alerted"
        for k, c in criteria.items()
    )
    if failed:
        return Outcome(
            "failed",
            evidence,
            f"the {', '.join(failed)} limit(s) did not stop the agent before crossing, or did "
            "not alert (warning and critical BudgetLimit): see criteria_per_limit "
            "(docs/security.md)",
            measured,
        )
    if unreached:
        evidence["not_exercised"] = {
            k: f"its {phases[k]['tasks']} tasks completed within the limit, leaving "
            f"{phases[k]['limit_usd'] - phases[k]['spent_usd']:.6f} USD (a worst-case call: "
            f"{phases[k]['worst_case_call_usd']:.6f} USD): no call needed more, none to stop"
            for k in unreached
        }
        return Outcome(
            "partial",
            evidence,
            f"the driven tasks never needed more than the room under the {', '.join(unreached)} "
            "limit(s) (each call cost far less than its worst case), so no stop is shown; the "
            "spend stayed within them and tasks at a met limit were refused: see not_exercised",
            measured,
        )
    if others:
        return Outcome(
            "partial",
            evidence,
            "every limit held and alerted, but tasks failed for reasons other than the "
            f"limit during the run ({', '.join(others)}): see per_limit.other_failures",
            measured,
        )
    if missing or unlimited:
        return Outcome(
            "partial",
            evidence,
            "set every limit kind on every agent that calls a model: "
            + (f"{agent.name!r} has no {', '.join(missing)} limit" if missing else "")
            + ("; " if missing and unlimited else "")
            + (f"{', '.join(unlimited)} ha(s) no budget" if unlimited else ""),
            measured,
        )
    return Outcome("complete", evidence, measured=measured)
