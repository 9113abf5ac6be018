"""Every default alert rule, driven through its metrics on a FakeClock: warning fires
first, then critical, and both resolve (critical first) when the condition clears."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from stalwart.errors import ConfigError
from stalwart.observe import AlertEvaluator, AlertRule, Threshold, default_rules, promql
from stalwart.testing import FakeClock

MiB = 2**20


class World:
    """The series the default rules read, on a private registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "stalwart_model_requests", "", ["model", "provider", "operation"], registry=r
        )
        self.errors = Counter(
            "stalwart_model_errors", "", ["model", "provider", "error_class"], registry=r
        )
        self.breaker = Gauge("stalwart_breaker_state", "", ["dependency"], registry=r)
        self.restarts = Counter("stalwart_agent_restarts", "", ["agent"], registry=r)
        self.finished = Counter("stalwart_tasks_finished", "", ["outcome"], registry=r)
        self.degraded = Gauge("stalwart_degraded", "", ["component"], registry=r)
        self.budget = Gauge("stalwart_budget_used_ratio", "", ["scope"], registry=r)
        self.rss = Gauge("stalwart_agent_resident_memory_bytes", "", ["agent"], registry=r)
        self.ready = Gauge("stalwart_ready", "", registry=r)
        self.shed = Counter("stalwart_tasks_shed", "", ["agent"], registry=r)
        self.ready.set(1)
        self.rss_now = 100 * MiB


def model(w: World, error_share: float) -> None:
    w.requests.labels("gpt", "openai", "chat").inc(100)
    if error_share:
        w.errors.labels("gpt", "openai", "RateLimited").inc(100 * error_share)


def tasks(w: World, failed: int) -> None:
    w.finished.labels("completed").inc(100 - failed)
    if failed:
        w.finished.labels("failed").inc(failed)


def grow(w: World, per_tick: float) -> None:
    w.rss_now += per_tick
    w.rss.labels("a").set(w.rss_now)


Phase = Callable[[World], None]
SCENARIOS: dict[str, tuple[Phase, Phase, Phase]] = {
    "ModelErrorRate": (lambda w: model(w, 0.1), lambda w: model(w, 0.5), lambda w: model(w, 0)),
    "BreakerOpen": (
        lambda w: w.breaker.labels("sim").set(1),
        lambda w: w.breaker.labels("sim").set(1),
        lambda w: w.breaker.labels("sim").set(0),
    ),
    "RestartStorm": (
        lambda w: w.restarts.labels("a").inc(0.15),
        lambda w: w.restarts.labels("a").inc(1),
        lambda w: None,
    ),
    "TaskFailureRate": (lambda w: tasks(w, 10), lambda w: tasks(w, 50), lambda w: tasks(w, 0)),
    "ProlongedDegradation": (
        lambda w: w.degraded.labels("model:default").set(1),
        lambda w: w.degraded.labels("model:default").set(1),
        lambda w: w.degraded.labels("model:default").set(0),
    ),
    "BudgetLimit": (
        lambda w: w.budget.labels("day").set(0.85),
        lambda w: w.budget.labels("day").set(1.02),
        lambda w: w.budget.labels("day").set(0.1),
    ),
    "MemoryGrowth": (lambda w: grow(w, 2 * MiB), lambda w: grow(w, 8 * MiB), lambda w: grow(w, 0)),
    "TasksShed": (
        lambda w: w.shed.labels("a").inc(0.5),
        lambda w: w.shed.labels("a").inc(5),
        lambda w: None,
    ),
    "ReadinessFailing": (
        lambda w: w.ready.set(0),
        lambda w: w.ready.set(0),
        lambda w: w.ready.set(1),
    ),
}


def test_every_default_rule_has_a_scenario():
    assert {r.name for r in default_rules()} == set(SCENARIOS)


@pytest.mark.parametrize("rule", default_rules(), ids=lambda r: r.name)
def test_default_rule_fires_warning_then_critical_then_resolves(rule: AlertRule):
    w = World()
    clock = FakeClock()
    ev = AlertEvaluator([rule], registry=w.registry, clock=clock)
    warn, crit, clear = SCENARIOS[rule.name]
    seen: list[tuple[str, str]] = []

    def run(phase: Phase, until: tuple[str, str], ticks: int = 1000) -> float:
        start = clock.monotonic()
        for _ in range(ticks):
            phase(w)
            seen.extend((n.severity, n.status) for n in ev.evaluate())
            if until in seen:
                return clock.monotonic() - start
            clock.advance(10)
        raise AssertionError(f"{rule.name}: {until} never happened; saw {seen}")

    took = run(warn, ("warning", "firing"))
    assert took >= rule.warning.for_s  # `for` is honoured
    assert ("critical", "firing") not in seen
    run(crit, ("critical", "firing"))
    run(clear, ("warning", "resolved"))
    assert seen == [
        ("warning", "firing"), ("critical", "firing"),
        ("critical", "resolved"), ("warning", "resolved"),
    ]  # fmt: skip
    assert ev.active() == []


def test_a_blip_shorter_than_for_does_not_fire():
    w = World()
    clock = FakeClock()
    rule = next(r for r in default_rules() if r.name == "ReadinessFailing")
    ev = AlertEvaluator([rule], registry=w.registry, clock=clock)
    w.ready.set(0)
    assert ev.evaluate() == []
    clock.advance(rule.warning.for_s - 1)
    assert ev.evaluate() == []
    w.ready.set(1)
    clock.advance(5)
    assert ev.evaluate() == []
    w.ready.set(0)  # pending restarts from zero after a clear evaluation
    assert ev.evaluate() == []


def test_model_error_rate_keeps_firing_while_the_breaker_refuses_every_call():
    """A full outage: once the breaker is open no request goes out, yet every call fails
    (CircuitOpen counts as a model error). The alert must not resolve for want of requests."""
    w = World()
    clock = FakeClock()
    rule = next(r for r in default_rules() if r.name == "ModelErrorRate")
    ev = AlertEvaluator([rule], registry=w.registry, clock=clock)
    seen: list[tuple[str, str]] = []
    for _ in range(30):  # 5 minutes of a failing model: both levels fire
        model(w, 1.0)
        seen.extend((n.severity, n.status) for n in ev.evaluate())
        clock.advance(10)
    assert ("critical", "firing") in seen
    for _ in range(60):  # 10 minutes of the breaker refusing every call: no requests at all
        w.errors.labels("gpt", "openai", "CircuitOpen").inc(20)
        seen.extend((n.severity, n.status) for n in ev.evaluate())
        clock.advance(10)
    assert ("critical", "resolved") not in seen
    assert [a["severity"] for a in ev.active()] == ["warning", "critical"]
    for _ in range(60):  # nothing is called any more: no value, the alert ends
        seen.extend((n.severity, n.status) for n in ev.evaluate())
        clock.advance(10)
    assert ("critical", "resolved") in seen and ev.active() == []


def test_groups_fire_separately_with_their_labels():
    w = World()
    clock = FakeClock()
    rule = next(r for r in default_rules() if r.name == "BudgetLimit")
    ev = AlertEvaluator([rule], registry=w.registry, clock=clock)
    w.budget.labels("day").set(0.9)
    w.budget.labels("task").set(0.1)
    notices = ev.evaluate()
    assert [(n.labels, n.value) for n in notices] == [
        ({"alertname": "BudgetLimit", "severity": "warning", "scope": "day"}, 0.9)
    ]


def test_bad_rules_are_refused():
    with pytest.raises(ConfigError):
        AlertRule("x y", "max", "m", Threshold(1), Threshold(2), "s")
    with pytest.raises(ConfigError):
        AlertRule("R", "ratio", "m", Threshold(1), Threshold(2), "s")


def test_promql_of_each_kind():
    rules = {r.name: r for r in default_rules()}
    assert promql(rules["RestartStorm"]) == (
        "sum by (agent) (increase(stalwart_agent_restarts_total[300s]))"
    )
    assert promql(rules["ReadinessFailing"]) == "count (stalwart_ready == 0)"
    assert 'stalwart_tasks_finished_total{outcome="failed"}[900s]' in promql(
        rules["TaskFailureRate"]
    )


async def test_tick_runs_before_and_notifies_in_order():
    w = World()
    clock = FakeClock()
    got = []
    calls = []

    async def before() -> None:
        calls.append("before")
        w.ready.set(0)

    rule = AlertRule("R", "count", "stalwart_ready", Threshold(1), Threshold(1), "s", equals=0.0)
    ev = AlertEvaluator([rule], registry=w.registry, clock=clock, before=before, notify=got.append)
    await ev.tick()
    assert calls == ["before"]
    assert [(n.severity, n.status) for n in got] == [("warning", "firing"), ("critical", "firing")]
