"""MA-3: every alert rule of the node made to fire for real, at warning and at critical.

For each rule of the node's alert evaluator, verify produces the rule's *condition* on
the live node -- it does not call the notifier or the ``/v1/alerts/{name}/test``
endpoint -- and then follows what the node does with it: the evaluator's firing and
resolved notices (``alert_firing`` / ``alert_resolved`` events), and the bodies that
reach the configured channel (the verify receiver, a loopback webhook). Rules are
matched to a driver by the metric they read (see ``_alert_drivers``).

The drivers that share nothing run concurrently (restarts, memory, models); the budget
runs after the models are back. A rule fails the item when it never fires at a
severity, fires at the wrong one (its notice's threshold is not the rule's, its value
is below it, the critical fires at a warning-level condition or before its ``for``, or
before the warning), is not delivered to the channel, or never resolves.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from stalwart.observe import AlertRule, Event, default_rules
from stalwart.resilience import DEFAULT_BREAKER
from stalwart.verify._alert_drivers import (
    DRIVE,
    DRIVERS,
    SEVERITIES,
    DriverRun,
    Pump,
    alert_group,
    alert_labels,
    alert_notices,
    groups_left_open,
    match_for,
)
from stalwart.verify._poll import until
from stalwart.verify._registry import Outcome, check
from stalwart.verify._target import Target

__all__ = ["alert_rules"]

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


def alert_rules(t: Target) -> list[AlertRule]:
    """The rules the node's evaluator runs (what MA-3 drives)."""
    evaluator = t.http.evaluator
    if evaluator is None:
        return list(t.http.rules)
    return list(evaluator.rules.values())


# -- judging ------------------------------------------------------------------------------


def _body_key(body: Any) -> tuple[str, str, str] | None:
    if not isinstance(body, dict) or "alertname" not in body:
        return None
    return str(body.get("alertname")), str(body.get("severity")), str(body.get("status"))


def _delivered(t: Target, event: Event, used: set[int]) -> tuple[int, float] | None:
    """The receiver body (index, arrival) that carries ``event``'s notice, if one arrived."""
    status = "firing" if event.name == "alert_firing" else "resolved"
    want = (str(event.fields.get("alertname")), str(event.fields.get("severity")), status)
    labels = alert_labels(event)
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
    t: Target, rule: AlertRule, run: DriverRun, used: set[int]
) -> tuple[dict[str, Any], list[str]]:
    """One rule's evidence and what is wrong with it (nothing: it passed)."""
    problems: list[str] = []
    evidence: dict[str, Any] = {
        "thresholds": _threshold_table(rule),
        "driver": run.driver,
        "how": run.how,
    }
    caused = run.caused_for.get(rule.metric, run.caused_at or 0.0)
    notices = alert_notices(t, rule.name, caused, run.finished_at)  # every group: all delivered
    want = match_for(rule, run.match)
    driven = alert_notices(t, rule.name, caused, run.finished_at, want)  # what the driver caused
    firing = [e for e in notices if e.name == "alert_firing"]
    first: dict[str, Event] = {}
    for e in driven:
        if e.name == "alert_firing":
            first.setdefault(str(e.fields.get("severity")), e)
    others = sorted({json.dumps(dict(alert_group(e))) for e in firing if e not in driven})
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
    open_groups = groups_left_open(driven)
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
                "group": {k: v for k, v in alert_group(e) if k != "alertname"},
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


@check(
    "MA-3",
    criterion=(
        "each alert rule has warning and critical thresholds, fires at each and resolves, "
        "delivered to its channel"
    ),
    does="drives each alert rule's condition for real",
    estimate_s=90,
)
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
            quiet = await until(settled, timeout=QUIET_S, every=0.25)
        finally:
            await trickle.stop()
    settled_s = round(time.monotonic() - settling, 1)
    # still firing: its condition was left by something before (its own firing is then
    # not seen again, so it cannot be demonstrated)
    stale = [] if evaluator is None else [a for a in evaluator.active() if a["name"] in names]
    runs: dict[str, DriverRun] = {}

    async def drive(driver: str) -> None:
        run = runs[driver] = DriverRun(driver)
        try:
            await DRIVE[driver](t, groups[driver], run)
        except Exception as exc:  # what it did so far is judged; why it stopped is a problem
            run.failed = f"{type(exc).__name__}: {exc}"
            run.finished_at = time.time()

    await asyncio.gather(
        *(drive(d) for d in ("restarts", "memory", "models", "shedding") if d in groups)
    )
    if "budget" in groups:
        await drive("budget")  # on healthy models, after the outage is over
    # the last notices may still be on their way
    await until(lambda: _undelivered(t, started) == 0, timeout=DELIVERY_S)
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
