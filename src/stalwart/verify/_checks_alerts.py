"""MA-3: every alert rule of the node made to fire for real, at warning and at critical.

For each rule of the node's alert evaluator, verify produces the rule's *condition* on
the live node -- it does not call the notifier or the ``/v1/alerts/{name}/test``
endpoint -- and then follows what the node does with it: the evaluator's firing and
resolved notices (``alert_firing`` / ``alert_resolved`` events), and the bodies that
reach the configured channel (the verify receiver, a loopback webhook).

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

The drivers that share nothing run concurrently (restarts, memory, models); the budget
runs after the models are back. A rule fails the item when it never fires at a
severity, fires at the wrong one (its notice's threshold is not the rule's, its value
is below it, the critical fires at a warning-level condition or before its ``for``, or
before the warning), is not delivered to the channel, or never resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from stalwart.guard import SpendLedger
from stalwart.observe import REGISTRY, AlertRule, Event, default_rules
from stalwart.resilience import DEFAULT_BREAKER
from stalwart.runtime import ChildSpec
from stalwart.verify._probe import VerifyProbe
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import Target

__all__ = ["DRIVERS", "Pump", "alert_rules"]

MiB = 2**20
SEVERITIES: tuple[Literal["warning", "critical"], ...] = ("warning", "critical")
Match = dict[str, str]
"""Label values naming the alert groups a driver produces (``{"agent": "triage"}``)."""

DRIVERS: dict[str, str] = {
    "stalwart_agent_restarts_total": "restarts",
    "stalwart_agent_resident_memory_bytes": "memory",
    "stalwart_model_errors_total": "models",
    "stalwart_breaker_state": "models",
    "stalwart_degraded": "models",
    "stalwart_tasks_finished_total": "models",
    "stalwart_ready": "models",
    "stalwart_budget_used_ratio": "budget",
}
"""The metric each driver makes move, and so which rules it can make fire."""

WATCHES = {
    "stalwart_agent_restarts_total": "agent restarts",
    "stalwart_agent_resident_memory_bytes": "agent memory growth",
    "stalwart_model_errors_total": "model error rate",
    "stalwart_breaker_state": "open circuit breakers",
    "stalwart_degraded": "prolonged degradation",
    "stalwart_tasks_finished_total": "task failure rate",
    "stalwart_ready": "readiness failing",
    "stalwart_budget_used_ratio": "spend against its limit",
}
"""What must be alerted on: a condition with no rule reading its metric fails the item."""

QUIET_S = DEFAULT_BREAKER.wait_duration_in_open + 10
"""How long MA-3 waits for alerts left firing by earlier items to resolve first (an open
breaker lets a trial call through only after its open period)."""
DELIVERY_S = 8.0
"""How long a notice may take to reach the channel (its notifier retries with backoff)."""
PROBE = "verify-memory-probe"
MEMORY_CAP = 512 * MiB
"""The most the memory driver allocates; a rule needing more is not producible."""


def alert_rules(t: Target) -> list[AlertRule]:
    """The rules the node's evaluator runs (what MA-3 drives)."""
    evaluator = t.http.evaluator
    if evaluator is None:
        return list(t.http.rules)
    return list(evaluator.rules.values())


@dataclasses.dataclass(slots=True)
class _Run:
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


def _labels(event: Event) -> dict[str, str]:
    raw = event.fields.get("labels") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def _group(event: Event) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in _labels(event).items() if k not in ("severity",)))


def _notices(
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
        and (not want or all(_labels(e).get(k) == v for k, v in want.items()))
    ]


def _want(rule: AlertRule, match: Match) -> Match:
    """The part of a driver's ``match`` that names ``rule``'s groups (its ``by`` labels)."""
    return {k: v for k, v in match.items() if k in rule.by}


def _fired(t: Target, rule: AlertRule, severity: str, since: float, match: Match) -> bool:
    return any(
        e.name == "alert_firing" and e.fields.get("severity") == severity
        for e in _notices(t, rule.name, since, want=_want(rule, match))
    )


def _open_groups(notices: list[Event]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """(severity, group) that fired among ``notices`` and have not resolved after."""
    state: dict[tuple[str, tuple[tuple[str, str], ...]], bool] = {}
    for e in notices:
        state[(str(e.fields.get("severity")), _group(e))] = e.name == "alert_firing"
    return {k for k, firing in state.items() if firing}


def _all_fired(
    t: Target, rules: Iterable[AlertRule], severity: str, since: float, match: Match
) -> bool:
    return all(_fired(t, r, severity, since, match) for r in rules)


def _any_open(t: Target, rules: Iterable[AlertRule], since: float, match: Match) -> bool:
    return any(_open_groups(_notices(t, r.name, since, want=_want(r, match))) for r in rules)


async def _until(pred: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    """Poll ``pred`` (state the node's events update) until true or ``timeout``; True if met."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


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


async def _restarts(t: Target, rules: list[AlertRule], run: _Run) -> _Run:
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
    if not await _until(lambda: _all_fired(t, rules, "warning", since, run.match), 10):
        run.notes.append(f"no warning within 10 s of {need_w} restarts")
    run.warning_only_until = time.time()
    for _ in range(need_c - need_w):
        await kill()
    run.removed_at = time.time()  # no more kills: the window forgets them
    await _until(lambda: _all_fired(t, rules, "critical", since, run.match), 10)
    window = max(r.window_s for r in rules)
    await _until(lambda: not _any_open(t, rules, since, run.match), window + 15)
    run.finished_at = time.time()
    return run


async def _memory(t: Target, rules: list[AlertRule], run: _Run) -> _Run:
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
        await _until(lambda: evaluator is None or evaluator.evaluations >= seen + 2, 10)
        run.caused_at = since = time.time()
        await t.node.call(PROBE, {"op": "hold", "bytes": first}, timeout=30)
        if not await _until(lambda: _all_fired(t, rules, "warning", since, run.match), 10):
            run.notes.append(f"no warning within 10 s of +{first / MiB:.0f} MiB")
        run.warning_only_until = time.time()
        await t.node.call(PROBE, {"op": "hold", "bytes": second}, timeout=30)
        await _until(lambda: _all_fired(t, rules, "critical", since, run.match), 10)
    finally:
        run.removed_at = time.time()
        await host.terminate(proc, 5.0)
    await _until(lambda: not _any_open(t, rules, run.caused_at or 0, run.match), 15)
    run.finished_at = time.time()
    return run


def _sim_chain(t: Target) -> tuple[str, list[str]]:
    """The app's first chain of simulated models: (its name, its models); else ("", [])."""
    for name, models in t.service.app.models.items():
        if models and all(m.startswith("sim:") for m in models):
            return name, list(models)
    return "", []


async def _models(t: Target, rules: list[AlertRule], run: _Run) -> _Run:
    name, chain = _sim_chain(t)
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
        return _all_fired(t, rules_of, severity, since, run.match)

    def note(what: str) -> None:
        run.notes.append(f"{time.time() - since:5.1f} s: {what}")

    failing = ("stalwart_tasks_finished_total", "stalwart_model_errors_total")
    down = ("stalwart_breaker_state", "stalwart_degraded")
    pump = Pump(t, "ma3-models", concurrency=6, pace=0.2).start()
    store_closed = False
    try:
        world.set_fault(primary, status=400)  # permanent: no fallback takes the request
        if not await _until(lambda: fired(failing, "critical"), 20):
            note("primary answering 400 for 20 s: not every critical fired")
        world.set_fault(primary, outage=True)
        for metric in failing:  # the 400s end: no more failing tasks (the fallback serves)
            run.removed_for[metric] = time.time()
        note(f"{chain[0]} down")
        if not await _until(lambda: fired(down, "warning"), 20):
            note("primary down 20 s: its breaker or the degradation did not warn")
        if by_metric.get("stalwart_ready"):
            await store.close()  # the node's store goes away, as a lost database would
            store_closed = True
            run.caused_for["stalwart_ready"] = time.time()
            note("store closed")
            if not await _until(lambda: fired(["stalwart_ready"], "critical"), 10):
                note("store closed 10 s: readiness alerts incomplete")
            await store.open()
            store_closed = False
            run.removed_for["stalwart_ready"] = time.time()
            note("store reopened")
        if not await _until(lambda: fired(by_metric, "critical"), 20):
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
        if not await _until(lambda: not _any_open(t, rules, since, run.match), wait):
            note(f"alerts still open {wait:g} s after the primary came back")
    finally:
        note(f"tasks while recovering: {await trickle.stop()}")
    run.finished_at = time.time()
    return run


def _pad(value: Any, size: int) -> Any:
    filler = " ".join(
        f"attachment line {n}: the customer's full order history." for n in range(size // 50 + 1)
    )[:size]
    if isinstance(value, dict):
        return {**value, "text": f"{value.get('text', '')}\n\nAttached:\n{filler}"}
    return f"{value}\n\nAttached:\n{filler}"


async def _budget(t: Target, rules: list[AlertRule], run: _Run) -> _Run:
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
            record = await _run_task(t, agent.name, inputs[0], "ma3-budget-warning")
            run.notes.append(f"warning-level task: {record}")
            if await _until(lambda: _all_fired(t, rules, "warning", since, run.match), 10):
                run.warning_only_until = time.time()
            await asyncio.to_thread(seed, "task", "ma3-budget-critical", crit * limit)
            record = await _run_task(t, agent.name, inputs[1], "ma3-budget-critical")
            run.notes.append(f"critical-level task: {record}")
        else:
            limits = agent.security.inputs
            size = max(0, min(limits.max_string, limits.max_bytes) - 4096)
            run.how = (
                f"a task for {agent.name!r} (task limit ${limit:g}) with its input padded by "
                f"{size // 1024} KiB, then ordinary tasks"
            )
            record = await _run_task(t, agent.name, _pad(inputs[0], size), "ma3-budget-costly")
            run.notes.append(f"costly task: {record}")
    finally:
        await asyncio.to_thread(ledger.close)
    await _until(lambda: _all_fired(t, rules, "critical", since, run.match), 8)
    ratio = REGISTRY.get_sample_value("stalwart_budget_used_ratio", {"scope": "task"})
    run.notes.append(f"task-scope spend ratio then: {ratio}")
    reached = any(_fired(t, r, "warning", since, run.match) for r in rules)
    if seed is None and not reached and (ratio or 0.0) < warn:
        run.unproducible = (
            f"the largest input {agent.name!r} accepts took its task only to "
            f"{(ratio or 0.0):.0%} of the ${limit:g} limit"
        )
    run.removed_at = time.time()
    for n in range(5):  # ordinary tasks: the task-scope ratio is each new task's own
        if not _any_open(t, rules, since, run.match):
            break
        await _run_task(t, agent.name, inputs[2 + n], f"ma3-budget-ordinary-{n}")
        await _until(lambda: not _any_open(t, rules, since, run.match), 2)
    run.finished_at = time.time()
    return run


async def _run_task(t: Target, agent: str, value: Any, task_id: str) -> str:
    """Run one task on ``agent``; its final status (and error, if it failed)."""
    await t.tasks.submit(agent, value, task_id=task_id, seed=t.seed)
    record = await t.tasks.wait(task_id, timeout=30)
    error = (record.outcome or {}).get("error") if isinstance(record.outcome, dict) else None
    return f"{record.status}" + (f" ({str(error)[:160]})" if error else "")


_DRIVE: dict[str, Callable[[Target, list[AlertRule], _Run], Awaitable[_Run]]] = {
    "restarts": _restarts,
    "memory": _memory,
    "models": _models,
    "budget": _budget,
}


# -- judging ------------------------------------------------------------------------------


def _body_key(body: Any) -> tuple[str, str, str] | None:
    if not isinstance(body, dict) or "alertname" not in body:
        return None
    return str(body.get("alertname")), str(body.get("severity")), str(body.get("status"))


def _delivered(t: Target, event: Event, used: set[int]) -> tuple[int, float] | None:
    """The receiver body (index, arrival) that carries ``event``'s notice, if one arrived."""
    status = "firing" if event.name == "alert_firing" else "resolved"
    want = (str(event.fields.get("alertname")), str(event.fields.get("severity")), status)
    labels = _labels(event)
    for i, body in enumerate(t.receiver.bodies):
        if i in used or _body_key(body) != want:
            continue
        got = body.get("labels") or {}
        if all(str(got.get(k)) == v for k, v in labels.items()) and t.receiver.times[i] >= (
            event.ts - 1.0
        ):
            used.add(i)
            return i, t.receiver.times[i]
    return None


def _threshold_table(rule: AlertRule) -> dict[str, Any]:
    base = next((r for r in default_rules() if r.name == rule.name), None)
    table: dict[str, Any] = {
        "kind": rule.kind,
        "metric": rule.metric,
        "warning": {"value": rule.warning.value, "for_s": rule.warning.for_s},
        "critical": {"value": rule.critical.value, "for_s": rule.critical.for_s},
        "window_s": rule.window_s,
    }
    if base is not None and base != rule:
        table["defaults"] = {
            "warning": {"value": base.warning.value, "for_s": base.warning.for_s},
            "critical": {"value": base.critical.value, "for_s": base.critical.for_s},
            "window_s": base.window_s,
        }
    return table


def _judge(
    t: Target, rule: AlertRule, run: _Run, used: set[int]
) -> tuple[dict[str, Any], list[str]]:
    """One rule's evidence and what is wrong with it (nothing: it passed)."""
    problems: list[str] = []
    evidence: dict[str, Any] = {
        "thresholds": _threshold_table(rule),
        "driver": run.driver,
        "how": run.how,
    }
    caused = run.caused_for.get(rule.metric, run.caused_at or 0.0)
    notices = _notices(t, rule.name, caused, run.finished_at)  # every group: all delivered
    want = _want(rule, run.match)
    driven = _notices(t, rule.name, caused, run.finished_at, want)  # what the driver caused
    firing = [e for e in notices if e.name == "alert_firing"]
    first: dict[str, Event] = {}
    for e in driven:
        if e.name == "alert_firing":
            first.setdefault(str(e.fields.get("severity")), e)
    others = sorted({json.dumps(dict(_group(e))) for e in firing if e not in driven})
    evidence["group"] = want
    if others:
        evidence["other_groups_fired"] = [json.loads(g) for g in others]
    fired_after: dict[str, float | None] = {}
    for severity in SEVERITIES:
        threshold = rule.threshold(severity)
        head = first.get(severity)
        fired_after[severity] = round(head.ts - caused, 2) if head is not None else None
        if head is None:
            problems.append(f"{rule.name} never fired at {severity}")
            continue
        if head.ts - caused < threshold.for_s - 0.05:
            problems.append(
                f"{rule.name} fired {severity} {head.ts - caused:.1f} s after the condition "
                f"began, before its for of {threshold.for_s:g} s"
            )
    for e in firing:
        sent = str(e.fields.get("severity"))
        expected = rule.threshold("critical" if sent == "critical" else "warning").value
        value, threshold_sent = e.fields.get("value"), e.fields.get("threshold")
        if threshold_sent != expected:
            problems.append(
                f"{rule.name} fired {sent} with threshold {threshold_sent}, the rule's "
                f"{sent} threshold is {expected:g}"
            )
        if value is None or float(value) < expected:
            problems.append(
                f"{rule.name} fired {sent} at value {value}, below its threshold {expected:g}"
            )
        if (
            sent == "critical"
            and run.warning_only_until is not None
            and e.ts < run.warning_only_until
            and e in driven
        ):
            problems.append(
                f"{rule.name} fired critical (value {value}) while the condition was held at "
                "warning level"
            )
    if "warning" in first and "critical" in first and first["critical"].ts < first["warning"].ts:
        problems.append(f"{rule.name} fired critical before warning")
    open_groups = _open_groups(driven)
    resolved = [e for e in driven if e.name == "alert_resolved"]
    last_resolved: dict[str, float] = {}
    for e in resolved:
        last_resolved[str(e.fields.get("severity"))] = e.ts
    removed = run.removed_for.get(rule.metric, run.removed_at or caused)
    if firing and open_groups:
        problems.append(
            f"{rule.name} never resolved ({', '.join(sorted(s for s, _ in open_groups))}) "
            f"within {(run.finished_at or time.time()) - removed:.0f} s of the condition's removal"
        )
    deliveries: list[dict[str, Any]] = []
    missing = 0
    for e in notices:
        got = _delivered(t, e, used)
        status = "firing" if e.name == "alert_firing" else "resolved"
        if got is None:
            missing += 1
        deliveries.append(
            {
                "severity": e.fields.get("severity"),
                "status": status,
                "group": {k: v for k, v in _group(e) if k != "alertname"},
                "at_s": round(e.ts - caused, 2),
                "delivered_after_s": round(got[1] - e.ts, 3) if got is not None else None,
            }
        )
    if missing:
        problems.append(
            f"{rule.name}: {missing} of {len(notices)} notices never reached the channel "
            f"({t.receiver.url})"
        )
    excerpt = None
    for i, body in enumerate(t.receiver.bodies):
        if _body_key(body) == (rule.name, "critical", "firing") and t.receiver.times[i] >= caused:
            excerpt = {
                k: body.get(k)
                for k in (
                    "status",
                    "alertname",
                    "severity",
                    "labels",
                    "value",
                    "threshold",
                    "startsAt",
                )
            }
            break
    evidence.update(
        {
            "fired_after_s": fired_after,
            "resolved_after_removal_s": {
                s: round(ts - removed, 2) for s, ts in sorted(last_resolved.items())
            },
            "notices": deliveries,
            "payload": excerpt,
        }
    )
    if run.warning_only_until is not None:
        evidence["warning_level_held_s"] = round(run.warning_only_until - caused, 2)
    return evidence, problems


def _sanity(rule: AlertRule) -> list[str]:
    w, c = rule.warning, rule.critical
    if w.value > c.value:
        return [f"{rule.name}: warning threshold {w.value:g} is above critical {c.value:g}"]
    if w.value == c.value and w.for_s >= c.for_s:
        return [
            f"{rule.name}: warning and critical are the same condition (value {w.value:g}, "
            f"for {w.for_s:g}/{c.for_s:g} s): no early warning"
        ]
    return []


@check("MA-3")
async def alert_rules_fire(t: Target) -> Outcome:
    started = time.time()
    rules = alert_rules(t)
    problems: list[str] = []
    groups: dict[str, list[AlertRule]] = {}
    not_producible: dict[str, str] = {}
    for rule in rules:
        problems += _sanity(rule)
        driver = DRIVERS.get(rule.metric)
        if driver is None:
            not_producible[rule.name] = f"verify has no way to move {rule.metric}"
        else:
            groups.setdefault(driver, []).append(rule)
    watched = {r.metric for r in rules}
    missing = {m: what for m, what in WATCHES.items() if m not in watched}
    for metric, what in missing.items():
        problems.append(f"no alert rule watches {what} ({metric})")
    # alerts left firing by earlier items would hide these firings: let them resolve
    # first, under light traffic (an open breaker closes, and a degradation ends, only
    # through calls)
    names = {r.name for driven in groups.values() for r in driven}
    evaluator = t.http.evaluator

    def settled() -> bool:
        return evaluator is None or not any(a["name"] in names for a in evaluator.active())

    quiet = settled()
    settling = time.monotonic()
    if not quiet:
        trickle = Pump(t, "ma3-settle", concurrency=1, pace=1.0).start()
        try:
            quiet = await _until(settled, QUIET_S, 0.25)
        finally:
            await trickle.stop()
    settled_s = round(time.monotonic() - settling, 1)
    # still firing: its condition was left by something before (its own firing is then
    # not seen again, so it cannot be demonstrated)
    stale = [] if evaluator is None else [a for a in evaluator.active() if a["name"] in names]
    runs: dict[str, _Run] = {}

    async def drive(driver: str) -> None:
        run = runs[driver] = _Run(driver)
        try:
            await _DRIVE[driver](t, groups[driver], run)
        except Exception as exc:  # what it did so far is judged; why it stopped is a problem
            run.failed = f"{type(exc).__name__}: {exc}"
            run.finished_at = time.time()

    await asyncio.gather(*(drive(d) for d in ("restarts", "memory", "models") if d in groups))
    if "budget" in groups:
        await drive("budget")  # on healthy models, after the outage is over
    # the last notices may still be on their way
    await _until(lambda: _undelivered(t, started) == 0, DELIVERY_S)
    used: set[int] = set()
    per_rule: dict[str, Any] = {}
    for driver, driven in groups.items():
        run = runs[driver]
        if run.failed is not None:
            problems.append(f"the {driver} driver stopped: {run.failed}")
        for rule in driven:
            if run.unproducible is not None:
                not_producible[rule.name] = run.unproducible
                per_rule[rule.name] = {
                    "thresholds": _threshold_table(rule),
                    "driver": driver,
                    "not_producible": run.unproducible,
                }
                continue
            if run.caused_at is None:  # stopped before it produced anything
                per_rule[rule.name] = {"thresholds": _threshold_table(rule), "driver": driver}
                continue
            judged, wrong = _judge(t, rule, run, used)
            left = [a["labels"] for a in stale if a["name"] == rule.name]
            if left and any("never fired" in w for w in wrong):
                wrong.append(
                    f"{rule.name} was already firing when MA-3 began ({left}) and did not "
                    f"resolve within {QUIET_S:g} s: a condition left set before (e.g. a gauge "
                    "no process updates any more) hides its firing"
                )
            judged["driver_notes"] = run.notes
            per_rule[rule.name] = judged
            problems += wrong
    for name, why in not_producible.items():
        per_rule.setdefault(name, {"not_producible": why})
    result: dict[str, Any] = {
        "channel": f"webhook {t.receiver.url} (the verify receiver)",
        "rules": per_rule,
        "not_producible": not_producible,
        "no_rule_for": sorted(missing.values()),
        "quiet_before_start": quiet,
        "settled_s": settled_s,
        "firing_before_start": [{"name": a["name"], "labels": a["labels"]} for a in stale],
        "evaluation_interval_s": t.http.settings.alert_interval_s,
        "problems": problems,
        "chart": _chart(per_rule),
    }
    if problems:
        return Outcome(
            "failed",
            result,
            "every condition needs a rule with a warning below its critical, evaluated and "
            "delivered to a channel that receives it, and resolving once the condition ends; "
            "see problems (docs/observability.md, alert rules and notifiers)",
        )
    if not_producible:
        return Outcome(
            "partial",
            result,
            "these rules' conditions could not be produced on this app, so they are not "
            f"demonstrated: {', '.join(sorted(not_producible))}",
        )
    return Outcome("complete", result)


def _undelivered(t: Target, since: float) -> int:
    """Notices since ``since`` that have no body at the channel yet (per kind, by count)."""
    wanted: dict[tuple[str, str, str], int] = {}
    for e in t.seen:
        if e.name in ("alert_firing", "alert_resolved") and e.ts >= since:
            status = "firing" if e.name == "alert_firing" else "resolved"
            key = (str(e.fields.get("alertname")), str(e.fields.get("severity")), status)
            wanted[key] = wanted.get(key, 0) + 1
    for body, at in zip(list(t.receiver.bodies), list(t.receiver.times), strict=False):
        got = _body_key(body)
        if got is not None and at >= since and got in wanted:
            wanted[got] -= 1
    return sum(max(0, n) for n in wanted.values())


def _chart(per_rule: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in per_rule.items() if "fired_after_s" in v}
    x = sorted(shown)

    def at(name: str, key: str, severity: str) -> float | None:
        value = shown[name].get(key, {}).get(severity)
        return float(value) if isinstance(value, int | float) else None

    return {
        "kind": "bars",
        "title": "MA-3: seconds from the condition to warning, to critical, and to resolved",
        "x": x,
        "series": {
            "warning fired": [at(n, "fired_after_s", "warning") for n in x],
            "critical fired": [at(n, "fired_after_s", "critical") for n in x],
            "resolved after removal": [at(n, "resolved_after_removal_s", "warning") for n in x],
        },
        "unit": "s",
    }
