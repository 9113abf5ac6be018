"""MA-3's drivers: each produces, on the live node, the condition of the alert rules
reading one metric, and records when it began and ended.

Rules are matched to a *driver* by the metric they read, so a renamed or retuned rule
is still driven; a rule reading a metric no driver knows is listed as not producible
(the item is then partial, never silently complete):

``restarts`` (``stalwart_agent_restarts_total``)
    SIGKILLs one agent (one without a model when there is one) as many times as the
    warning threshold, checks the critical has not fired, then up to the critical
    threshold. The condition ends by itself once the rule's window passes the kills.
``memory`` (``stalwart_agent_resident_memory_bytes``)
    a probe agent process spawned on the node's own process host (so the node's
    collector samples it as any agent) allocates and touches memory past the warning
    threshold, then past the critical one; it exits to end the condition.
``models`` (``stalwart_model_errors_total``, ``stalwart_breaker_state``,
``stalwart_degraded``, ``stalwart_tasks_finished_total``, ``stalwart_ready``)
    the app's workload runs while the primary model of its first chain is down (the
    fallback serves: a degradation, the primary's breaker open, model errors), then while
    every model of the chain is down (tasks fail, every breaker of the chain opens, so
    the node is not ready); then the models come back and a trickle of tasks lets the
    breakers close through half-open, which ends every condition.
``budget`` (``stalwart_budget_used_ratio``)
    tasks for an agent with a per-task spend limit: one that had already spent the
    warning share of its limit before its real model calls (recorded in the app's ledger
    with ``SpendLedger.add_spent``), whose calls then settle above the warning threshold;
    one that had spent the critical share, whose next call the ledger refuses (the agent
    stops); then ordinary tasks bring the ratio back down. (Where the ledger cannot
    record earlier spend, one task with its input padded to the largest the agent
    accepts, so that its calls' worst cases may cross the limit.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from stalwart.errors import Overloaded
from stalwart.guard import SpendLedger
from stalwart.observe import REGISTRY, AlertRule, Event
from stalwart.resilience import DEFAULT_BREAKER
from stalwart.runtime import ChildSpec
from stalwart.verify._poll import until
from stalwart.verify._probe import VerifyProbe
from stalwart.verify._target import Target

__all__ = [
    "DRIVE",
    "DRIVERS",
    "DriverRun",
    "Match",
    "Pump",
    "SEVERITIES",
    "alert_group",
    "alert_labels",
    "alert_notices",
    "groups_left_open",
    "match_for",
]

MiB = 2**20
SEVERITIES: tuple[Literal["warning", "critical"], ...] = ("warning", "critical")
Match = dict[str, str]
"""Label values naming the alert groups a driver produces (``{"agent": "intake"}``)."""

DRIVERS: dict[str, str] = {
    "stalwart_agent_restarts_total": "restarts",
    "stalwart_agent_resident_memory_bytes": "memory",
    "stalwart_model_errors_total": "models",
    "stalwart_breaker_state": "models",
    "stalwart_degraded": "models",
    "stalwart_tasks_finished_total": "models",
    "stalwart_ready": "models",
    "stalwart_budget_used_ratio": "budget",
    "stalwart_tasks_shed_total": "shedding",
}
"""The metric each driver makes move, and so which rules it can make fire."""

PROBE = "verify-memory-probe"
MEMORY_CAP = 512 * MiB
"""The most the memory driver allocates; a rule needing more is not producible."""


@dataclasses.dataclass(slots=True)
class DriverRun:
    """What one driver did, on the wall clock of the node's events."""

    driver: str
    how: str = ""
    caused_at: float | None = None
    warning_only_until: float | None = None
    """Graded drivers: the condition was held at warning level only until then."""
    removed_at: float | None = None
    caused_for: dict[str, float] = dataclasses.field(default_factory=dict)
    """When the condition of rules reading this metric began, if later than ``caused_at``."""
    removed_for: dict[str, float] = dataclasses.field(default_factory=dict)
    """When the condition of rules reading this metric ended, if before ``removed_at``."""
    match: Match = dataclasses.field(default_factory=dict)
    """The groups the driver produces; other groups of its rules are reported beside."""
    failed: str | None = None
    """Why the driver stopped early, if it did (the item then fails)."""
    finished_at: float | None = None
    unproducible: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


def alert_labels(event: Event) -> dict[str, str]:
    raw = event.fields.get("labels") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def alert_group(event: Event) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in alert_labels(event).items() if k not in ("severity",)))


def alert_notices(
    t: Target, rule: str, since: float, until: float | None = None, want: Match | None = None
) -> list[Event]:
    """``rule``'s firing/resolved events in [since, until], of groups matching ``want``."""
    return [
        e
        for e in t.seen
        if e.name in ("alert_firing", "alert_resolved")
        and e.fields.get("alertname") == rule
        and e.ts >= since
        and (until is None or e.ts <= until)
        and (not want or all(alert_labels(e).get(k) == v for k, v in want.items()))
    ]


def match_for(rule: AlertRule, match: Match) -> Match:
    """The part of a driver's ``match`` that names ``rule``'s groups (its ``by`` labels)."""
    return {k: v for k, v in match.items() if k in rule.by}


def rule_fired(t: Target, rule: AlertRule, severity: str, since: float, match: Match) -> bool:
    return any(
        e.name == "alert_firing" and e.fields.get("severity") == severity
        for e in alert_notices(t, rule.name, since, want=match_for(rule, match))
    )


def groups_left_open(notices: list[Event]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """(severity, group) that fired among ``notices`` and have not resolved after."""
    state: dict[tuple[str, tuple[tuple[str, str], ...]], bool] = {}
    for e in notices:
        state[(str(e.fields.get("severity")), alert_group(e))] = e.name == "alert_firing"
    return {k for k, firing in state.items() if firing}


def all_rules_fired(
    t: Target, rules: Iterable[AlertRule], severity: str, since: float, match: Match
) -> bool:
    return all(rule_fired(t, r, severity, since, match) for r in rules)


def any_rule_open(t: Target, rules: Iterable[AlertRule], since: float, match: Match) -> bool:
    return any(
        groups_left_open(alert_notices(t, r.name, since, want=match_for(r, match))) for r in rules
    )


class Pump:
    """Keeps ``concurrency`` of the app's workload tasks running until stopped."""

    def __init__(
        self, t: Target, prefix: str, *, concurrency: int, pace: float, seed: int = 1301
    ) -> None:
        self.t = t
        self.prefix = prefix
        self.concurrency = concurrency
        self.pace = pace
        self.inputs = t.workload(400, seed=seed)
        self.n = 0
        self.outcomes: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> Pump:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        return self

    async def _work(self) -> None:
        while not self._stop.is_set():
            self.n += 1
            value = self.inputs[self.n % len(self.inputs)]
            task_id = f"{self.prefix}-{self.n:05d}-{int(time.time() * 1000) % 100000}"
            try:
                await self.t.tasks.submit(self.t.entry, value, task_id=task_id, seed=self.t.seed)
                record = await self.t.tasks.wait(task_id, timeout=60)
                status = str(record.status)
            except Exception as exc:  # counted, not fatal: the pump only makes traffic
                status = type(exc).__name__
            self.outcomes[status] = self.outcomes.get(status, 0) + 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.pace):  # traffic shaping, not synchronization
                    await self._stop.wait()

    async def stop(self) -> dict[str, int]:
        self._stop.set()
        await asyncio.gather(*self._workers, return_exceptions=True)
        return dict(self.outcomes)


# -- drivers ------------------------------------------------------------------------------


async def _restarts(t: Target, rules: list[AlertRule], run: DriverRun) -> DriverRun:
    app = t.service.app
    for rule in rules:
        if rule.kind != "increase":
            run.unproducible = f"{rule.name}: kind {rule.kind!r} of the restart counter"
            return run
    need_w = max(math.ceil(r.warning.value) for r in rules)
    need_c = max(math.ceil(r.critical.value) for r in rules)
    if need_c + 1 > app.intensity:
        run.unproducible = (
            f"reaching the critical threshold takes {need_c} restarts, and the app's "
            f"supervisor gives up after {app.intensity} in {app.period:g} s: verify would "
            "take the node down"
        )
        return run
    plain = [a.name for a in app.agents if getattr(a, "model", None) is None]
    victim = plain[0] if plain else app.agents[-1].name
    run.match = {"agent": victim}
    run.how = f"SIGKILL {victim!r} {need_w}x (warning level), then up to {need_c}x"

    async def kill() -> None:
        before = time.time()
        t.kill(victim)
        await t.wait_event("agent_restarted", timeout=15, after=before, agent=victim)

    run.caused_at = since = time.time()
    for _ in range(need_w):
        await kill()
    if not await until(lambda: all_rules_fired(t, rules, "warning", since, run.match), timeout=10):
        run.notes.append(f"no warning within 10 s of {need_w} restarts")
    run.warning_only_until = time.time()
    for _ in range(need_c - need_w):
        await kill()
    run.removed_at = time.time()  # no more kills: the window forgets them
    await until(lambda: all_rules_fired(t, rules, "critical", since, run.match), timeout=10)
    window = max(r.window_s for r in rules)
    await until(lambda: not any_rule_open(t, rules, since, run.match), timeout=window + 15)
    run.finished_at = time.time()
    return run


async def _memory(t: Target, rules: list[AlertRule], run: DriverRun) -> DriverRun:
    for rule in rules:
        if rule.kind != "delta":
            run.unproducible = f"{rule.name}: kind {rule.kind!r} of the memory gauge"
            return run
    warn = max(r.warning.value for r in rules)
    crit = max(r.critical.value for r in rules)
    first = math.ceil(warn * 1.3)
    second = math.ceil(crit * 1.3)
    if first + second > MEMORY_CAP:
        run.unproducible = (
            f"the critical threshold ({crit / MiB:.0f} MiB) needs more than verify allocates "
            f"({MEMORY_CAP / MiB:.0f} MiB); shorten it in the rules verify runs with"
        )
        return run
    run.match = {"agent": PROBE}
    host = t.node.runtime.host
    proc = await host.spawn(ChildSpec(PROBE, VerifyProbe, restart="temporary"))
    run.how = (
        f"a probe agent process on the node's host holds {first / MiB:.0f} MiB (warning "
        f"level), then {second / MiB:.0f} MiB more; it exits to end the condition"
    )
    try:
        evaluator = t.http.evaluator
        seen = evaluator.evaluations if evaluator is not None else 0
        # the evaluator samples the probe at rest first: the growth is measured from there
        await until(lambda: evaluator is None or evaluator.evaluations >= seen + 2, timeout=10)
        run.caused_at = since = time.time()
        await t.node.call(PROBE, {"op": "hold", "bytes": first}, timeout=30)
        if not await until(
            lambda: all_rules_fired(t, rules, "warning", since, run.match), timeout=10
        ):
            run.notes.append(f"no warning within 10 s of +{first / MiB:.0f} MiB")
        run.warning_only_until = time.time()
        await t.node.call(PROBE, {"op": "hold", "bytes": second}, timeout=30)
        await until(lambda: all_rules_fired(t, rules, "critical", since, run.match), timeout=10)
    finally:
        run.removed_at = time.time()
        await host.terminate(proc, 5.0)
    await until(lambda: not any_rule_open(t, rules, run.caused_at or 0, run.match), timeout=15)
    run.finished_at = time.time()
    return run


def sim_chain(t: Target) -> tuple[str, list[str]]:
    """The app's first chain of simulated models: (its name, its models); else ("", [])."""
    for name, models in t.service.app.models.items():
        if models and all(m.startswith("sim:") for m in models):
            return name, list(models)
    return "", []


async def _models(t: Target, rules: list[AlertRule], run: DriverRun) -> DriverRun:
    name, chain = sim_chain(t)
    store = t.service.store
    if t.service.sim is None or not chain or store is None:
        run.unproducible = "the app runs no simulated model chain (App(sim=True) with sim:* models)"
        return run
    world = t.sim.world
    primary = chain[0].partition(":")[2]
    run.match = {"model": chain[0], "dependency": chain[0], "component": f"chain:{name}"}
    run.how = (
        f"the workload runs while the primary model {chain[0]} answers 400 (tasks fail), "
        "then while it is down (its breaker opens, the fallback serves: a degradation); "
        "the node's store is closed meanwhile (readiness fails) and reopened; then the "
        "primary is back, with a task a second until its breaker closes through half-open"
    )
    by_metric: dict[str, list[AlertRule]] = {}
    for rule in rules:
        by_metric.setdefault(rule.metric, []).append(rule)
    run.caused_at = since = time.time()

    def fired(metrics: Iterable[str], severity: str) -> bool:
        rules_of = (r for m in metrics for r in by_metric.get(m, []))
        return all_rules_fired(t, rules_of, severity, since, run.match)

    def note(what: str) -> None:
        run.notes.append(f"{time.time() - since:5.1f} s: {what}")

    failing = ("stalwart_tasks_finished_total", "stalwart_model_errors_total")
    down = ("stalwart_breaker_state", "stalwart_degraded")
    pump = Pump(t, "ma3-models", concurrency=6, pace=0.2).start()
    store_closed = False
    try:
        world.set_fault(primary, status=400)  # permanent: no fallback takes the request
        if not await until(lambda: fired(failing, "critical"), timeout=20):
            note("primary answering 400 for 20 s: not every critical fired")
        world.set_fault(primary, outage=True)
        for metric in failing:  # the 400s end: no more failing tasks (the fallback serves)
            run.removed_for[metric] = time.time()
        note(f"{chain[0]} down")
        if not await until(lambda: fired(down, "warning"), timeout=20):
            note("primary down 20 s: its breaker or the degradation did not warn")
        if by_metric.get("stalwart_ready"):
            # the condition begins when the close does: readiness may fail while close()
            # is still waiting for the store's threads, and on a starved machine stamping
            # it after close() returned read a correct alert as early (2.8 s of a 3 s for,
            # make test with both cores busy, 2026-12-07)
            run.caused_for["stalwart_ready"] = time.time()
            await store.close()  # the node's store goes away, as a lost database would
            store_closed = True
            note("store closed")
            if not await until(lambda: fired(["stalwart_ready"], "critical"), timeout=10):
                note("store closed 10 s: readiness alerts incomplete")
            await store.open()
            store_closed = False
            run.removed_for["stalwart_ready"] = time.time()
            note("store reopened")
        if not await until(lambda: fired(by_metric, "critical"), timeout=20):
            note("primary down 20 s more: not every critical fired")
    finally:
        if store_closed:
            await store.open()
        world.clear_faults(primary)
        run.removed_at = time.time()
        note(f"{chain[0]} back; tasks while faulted: {await pump.stop()}")
    # an open breaker lets trial calls through only after its open period: a task a second
    trickle = Pump(t, "ma3-recover", concurrency=1, pace=1.0).start()
    try:
        wait = DEFAULT_BREAKER.wait_duration_in_open + 20
        if not await until(lambda: not any_rule_open(t, rules, since, run.match), timeout=wait):
            note(f"alerts still open {wait:g} s after the primary came back")
    finally:
        note(f"tasks while recovering: {await trickle.stop()}")
    run.finished_at = time.time()
    return run


def pad_input(value: Any, size: int) -> Any:
    filler = " ".join(
        f"attachment line {n}: the text of a long attached document." for n in range(size // 50 + 1)
    )[:size]
    if isinstance(value, dict):
        return {**value, "text": f"{value.get('text', '')}\n\nAttached:\n{filler}"}
    return f"{value}\n\nAttached:\n{filler}"


async def _budget(t: Target, rules: list[AlertRule], run: DriverRun) -> DriverRun:
    app = t.service.app
    limited = [a for a in app.agents if a.security.budget.task_usd is not None]
    if not limited:
        spends = [a.name for a in app.agents if a.security.budget.limited]
        run.unproducible = (
            "no agent of this app sets a per-task spend limit (Security.budget.task_usd): "
            + (
                f"{spends} limit only per agent or per day, which verify does not exhaust"
                if spends
                else "with no spend limit at all the rule can never fire"
            )
        )
        return run
    agent = limited[0]
    budget = agent.security.budget
    run.match = {"scope": "task"}
    limit = float(budget.task_usd or 0.0)
    inputs = t.workload(60, seed=1401)
    warn = min(r.warning.value for r in rules)
    crit = max(r.critical.value for r in rules)
    ledger = SpendLedger(budget.ledger or t.service.store_url)
    seed = getattr(ledger, "add_spent", None)  # spend made before: the limit within reach
    run.caused_at = since = time.time()
    try:
        if seed is not None:
            run.how = (
                f"tasks for {agent.name!r} (task limit ${limit:g}): one that had already spent "
                f"{warn:.0%} of it before its real model calls (warning level), one that had "
                f"spent {crit:.0%} (its next call is refused), then ordinary tasks"
            )
            await asyncio.to_thread(seed, "task", "ma3-budget-warning", warn * limit)
            record = await run_task(t, agent.name, inputs[0], "ma3-budget-warning")
            run.notes.append(f"warning-level task: {record}")
            if await until(
                lambda: all_rules_fired(t, rules, "warning", since, run.match), timeout=10
            ):
                run.warning_only_until = time.time()
            await asyncio.to_thread(seed, "task", "ma3-budget-critical", crit * limit)
            record = await run_task(t, agent.name, inputs[1], "ma3-budget-critical")
            run.notes.append(f"critical-level task: {record}")
        else:
            limits = agent.security.inputs
            size = max(0, min(limits.max_string, limits.max_bytes) - 4096)
            run.how = (
                f"a task for {agent.name!r} (task limit ${limit:g}) with its input padded by "
                f"{size // 1024} KiB, then ordinary tasks"
            )
            record = await run_task(t, agent.name, pad_input(inputs[0], size), "ma3-budget-costly")
            run.notes.append(f"costly task: {record}")
    finally:
        await asyncio.to_thread(ledger.close)
    await until(lambda: all_rules_fired(t, rules, "critical", since, run.match), timeout=8)
    ratio = REGISTRY.get_sample_value("stalwart_budget_used_ratio", {"scope": "task"})
    run.notes.append(f"task-scope spend ratio then: {ratio}")
    reached = any(rule_fired(t, r, "warning", since, run.match) for r in rules)
    if seed is None and not reached and (ratio or 0.0) < warn:
        run.unproducible = (
            f"the largest input {agent.name!r} accepts took its task only to "
            f"{(ratio or 0.0):.0%} of the ${limit:g} limit"
        )
    run.removed_at = time.time()
    for n in range(5):  # ordinary tasks: the task-scope ratio is each new task's own
        if not any_rule_open(t, rules, since, run.match):
            break
        await run_task(t, agent.name, inputs[2 + n], f"ma3-budget-ordinary-{n}")
        # after a refusal the agent's gauge reads 1 for the ledger's hold, settles or not
        hold = SpendLedger.REFUSAL_HOLD_S if n == 0 else 0.0
        await until(lambda: not any_rule_open(t, rules, since, run.match), timeout=2 + hold)
    run.finished_at = time.time()
    return run


SHED_PROBE = "verify-shed-probe"
"""The agent name the shedding driver submits to: refused at admission, never stored."""


async def _shedding(t: Target, rules: list[AlertRule], run: DriverRun) -> DriverRun:
    """Overload a probe agent: its admission limit set to 0, every submission refused."""
    for rule in rules:
        if rule.kind != "increase":
            run.unproducible = f"{rule.name}: kind {rule.kind!r} of the shed counter"
            return run
    need_w = max(math.ceil(r.warning.value) for r in rules)
    need_c = max(math.ceil(r.critical.value) for r in rules)
    tasks = t.tasks
    run.match = {"agent": SHED_PROBE}
    run.how = (
        f"admission limit of agent {SHED_PROBE!r} set to 0: {need_w} submissions refused "
        f"(warning level), then {need_c} in all"
    )
    refused = 0

    async def shed(n: int) -> None:
        nonlocal refused
        for _ in range(n):
            try:
                await tasks.submit(SHED_PROBE, {})
            except Overloaded:
                refused += 1
            else:  # stored: admission did not hold
                run.notes.append(f"a task for {SHED_PROBE!r} was accepted at limit 0")

    tasks.max_pending_for[SHED_PROBE] = 0
    try:
        run.caused_at = since = time.time()
        await shed(need_w)
        if not await until(
            lambda: all_rules_fired(t, rules, "warning", since, run.match), timeout=10
        ):
            run.notes.append(f"no warning within 10 s of {need_w} refusals")
        run.warning_only_until = time.time()
        await shed(need_c - need_w)
        run.removed_at = time.time()  # no more refusals: the window forgets them
    finally:
        tasks.max_pending_for.pop(SHED_PROBE, None)
    run.notes.append(f"{refused} submissions refused")
    await until(lambda: all_rules_fired(t, rules, "critical", since, run.match), timeout=10)
    window = max(r.window_s for r in rules)
    await until(lambda: not any_rule_open(t, rules, since, run.match), timeout=window + 15)
    run.finished_at = time.time()
    return run


async def run_task(t: Target, agent: str, value: Any, task_id: str) -> str:
    """Run one task on ``agent``; its final status (and error, if it failed)."""
    await t.tasks.submit(agent, value, task_id=task_id, seed=t.seed)
    record = await t.tasks.wait(task_id, timeout=30)
    error = (record.outcome or {}).get("error") if isinstance(record.outcome, dict) else None
    return f"{record.status}" + (f" ({str(error)[:160]})" if error else "")


DRIVE: dict[str, Callable[[Target, list[AlertRule], DriverRun], Awaitable[DriverRun]]] = {
    "restarts": _restarts,
    "memory": _memory,
    "models": _models,
    "budget": _budget,
    "shedding": _shedding,
}
