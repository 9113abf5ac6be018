"""Alert rules over metrics, with warning and critical thresholds and a ``for`` duration.

A rule measures one number per label group (``by``) from the metrics registry:
a gauge's ``max``/``sum``, a ``count`` of series equal to a value, a counter's
``increase`` over a window, a ``ratio`` of two increases, or a gauge's ``delta``
over a window. Each severity has its own threshold and ``for``: the alert
``(rule, severity, group)`` fires once the threshold has been met at every
evaluation for ``for`` seconds, and resolves at the first evaluation where it
is not. Warning and critical are separate alerts (as in Prometheus and
Alertmanager), so with ordered thresholds a warning always fires no later than
its critical, and a critical resolves no later than its warning.

The evaluator runs in the node on an injected :class:`~stalwart.clock.Clock`
(tests drive it with ``FakeClock``). :func:`prometheus_rules` exports the same
rules, with the same thresholds and ``for``, as a Prometheus rules file.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import json
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Gauge

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ConfigError
from stalwart.observe._metrics import REGISTRY

__all__ = [
    "AlertEvaluator",
    "AlertNotice",
    "AlertRule",
    "Threshold",
    "default_rules",
    "load_rules",
    "prometheus_rules",
]

Kind = Literal["max", "sum", "count", "increase", "ratio", "delta"]
Severity = Literal["warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("warning", "critical")

ALERTS_FIRING = Gauge(
    "stalwart_alerts_firing", "1 while the alert fires", ["alertname", "severity"],
    registry=REGISTRY,
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Threshold:
    """Fire when the measure is ``>= value`` for ``for_s`` seconds (``0``: at once)."""

    value: float
    for_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert rule (see the module docstring for the kinds).

    ``metric`` is a sample name as exposed (``stalwart_agent_restarts_total``);
    ``denominator`` is the second one for ``ratio``; ``match`` keeps only series
    with these exact label values; ``equals`` is the value ``count`` counts;
    ``window_s`` is the range of ``increase``, ``ratio`` and ``delta``; ``by`` are the
    labels that split the rule into one alert per group.
    """

    name: str
    kind: Kind
    metric: str
    warning: Threshold
    critical: Threshold
    summary: str
    by: tuple[str, ...] = ()
    match: tuple[tuple[str, str], ...] = ()
    denominator: str | None = None
    denominator_match: tuple[tuple[str, str], ...] = ()
    equals: float = 1.0
    window_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"alert rule name {self.name!r} must be an identifier")
        if self.kind not in ("max", "sum", "count", "increase", "ratio", "delta"):
            raise ConfigError(
                f"alert rule {self.name}: kind {self.kind!r} is not one of "
                "max, sum, count, increase, ratio, delta"
            )
        if self.kind == "ratio" and not self.denominator:
            raise ConfigError(f"alert rule {self.name}: kind 'ratio' needs a denominator")
        if self.window_s <= 0:
            raise ConfigError(f"alert rule {self.name}: window_s must be > 0")
        for t in (self.warning, self.critical):
            if not math.isfinite(t.value) or t.for_s < 0:
                raise ConfigError(f"alert rule {self.name}: bad threshold {t}")

    def threshold(self, severity: Severity) -> Threshold:
        return self.warning if severity == "warning" else self.critical


@dataclasses.dataclass(frozen=True, slots=True)
class AlertNotice:
    """One notification: an alert started firing or resolved."""

    name: str
    severity: Severity
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    value: float | None
    threshold: float
    summary: str
    starts_at: float
    ends_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


Snapshot = dict[str, dict[tuple[tuple[str, str], ...], float]]


def _snapshot(registry: CollectorRegistry, names: set[str]) -> Snapshot:
    out: Snapshot = {name: {} for name in names}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in names:
                out[sample.name][_key(sample.labels)] = float(sample.value)
    return out


@dataclasses.dataclass
class _Track:
    pending_since: float | None = None
    firing: bool = False
    started_wall: float = 0.0
    value: float | None = None


class AlertEvaluator:
    """Evaluates rules every ``interval`` seconds and reports changes to ``notify``.

    ``before`` (optional) runs before each evaluation (the node refreshes its
    readiness gauges there). ``notify`` gets each :class:`AlertNotice`; it may be
    async, and should hand delivery off quickly (the server's notifiers do).
    """

    def __init__(
        self,
        rules: Iterable[AlertRule],
        *,
        registry: CollectorRegistry = REGISTRY,
        clock: Clock = SYSTEM_CLOCK,
        interval: float = 5.0,
        notify: Callable[[AlertNotice], Awaitable[None] | None] | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
        keep: int = 200,
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.registry = registry
        self.clock = clock
        self.interval = interval
        self._notify = notify
        self._before = before
        self._tracks: dict[tuple[str, Severity, tuple[tuple[str, str], ...]], _Track] = {}
        self._history: collections.deque[tuple[float, Snapshot]] = collections.deque()
        self.recent: collections.deque[AlertNotice] = collections.deque(maxlen=keep)
        self._names: set[str] = set()
        for r in self.rules.values():
            self._names.add(r.metric)
            if r.denominator:
                self._names.add(r.denominator)
        self._span = max((r.window_s for r in self.rules.values()), default=0.0)
        self.evaluations = 0
        self._lock = threading.Lock()  # evaluate() runs in a worker thread
        """How many evaluations have run (lets callers wait for the next one)."""

    # -- measuring ----------------------------------------------------------------------
    def _at(self, t: float) -> Snapshot:
        """The newest snapshot taken at or before ``t`` (else the oldest one)."""
        best = self._history[0][1]
        for ts, snap in self._history:
            if ts <= t:
                best = snap
            else:
                break
        return best

    def _groups(
        self, rule: AlertRule, series: dict[tuple[tuple[str, str], ...], float], match: Any
    ) -> dict[tuple[tuple[str, str], ...], list[tuple[tuple[tuple[str, str], ...], float]]]:
        groups: dict[tuple[tuple[str, str], ...], list[Any]] = {}
        for key, value in series.items():
            labels = dict(key)
            if any(labels.get(k) != v for k, v in match):
                continue
            group = tuple((b, labels.get(b, "")) for b in rule.by)
            groups.setdefault(group, []).append((key, value))
        return groups

    def _increase(
        self, rule: AlertRule, metric: str, match: Any, now_snap: Snapshot, old: Snapshot
    ) -> dict[tuple[tuple[str, str], ...], float]:
        out: dict[tuple[tuple[str, str], ...], float] = {}
        before = old.get(metric, {})
        for group, items in self._groups(rule, now_snap.get(metric, {}), match).items():
            total = 0.0
            for key, value in items:
                prev = before.get(key, 0.0)
                total += value - prev if value >= prev else value  # a reset counts from 0
            out[group] = total
        return out

    def measure(self, rule: AlertRule) -> dict[tuple[tuple[str, str], ...], float | None]:
        """The rule's value per label group, from the snapshots taken so far."""
        if not self._history:
            return {}
        now_t, now_snap = self._history[-1]
        old = self._at(now_t - rule.window_s)
        if rule.kind == "increase":
            return dict(self._increase(rule, rule.metric, rule.match, now_snap, old))
        if rule.kind == "ratio":
            assert rule.denominator is not None
            num = self._increase(rule, rule.metric, rule.match, now_snap, old)
            den = self._increase(rule, rule.denominator, rule.denominator_match, now_snap, old)
            return {g: _ratio(num.get(g, 0.0), den.get(g, 0.0)) for g in num.keys() | den.keys()}
        series = now_snap.get(rule.metric, {})
        out: dict[tuple[tuple[str, str], ...], float | None] = {}
        for group, items in self._groups(rule, series, rule.match).items():
            values = [v for _, v in items]
            if rule.kind == "max":
                out[group] = max(values)
            elif rule.kind == "sum":
                out[group] = sum(values)
            elif rule.kind == "count":
                out[group] = float(sum(1 for v in values if v == rule.equals))
            else:  # delta: from the value at the window's start (or first seen inside it)
                before = old.get(rule.metric, {})
                out[group] = max(
                    v - before.get(k, self._first_seen(rule.metric, k, now_t - rule.window_s, v))
                    for k, v in items
                )
        return out

    def _first_seen(self, metric: str, key: Any, since: float, default: float) -> float:
        for ts, snap in self._history:
            if ts >= since and key in snap.get(metric, {}):
                return snap[metric][key]
        return default

    # -- evaluating ---------------------------------------------------------------------
    def evaluate(self) -> list[AlertNotice]:
        """Take a snapshot, update every alert's state, and return the changes (in order)."""
        with self._lock:
            return self._evaluate()

    def _evaluate(self) -> list[AlertNotice]:
        now = self.clock.monotonic()
        wall = self.clock.time()
        self.evaluations += 1
        self._history.append((now, _snapshot(self.registry, self._names)))
        while len(self._history) > 2 and self._history[1][0] <= now - self._span:
            self._history.popleft()
        fired: list[AlertNotice] = []
        resolved: list[AlertNotice] = []
        for rule in self.rules.values():
            values = self.measure(rule)
            for severity in SEVERITIES:
                threshold = rule.threshold(severity)
                seen = set()
                for group, value in values.items():
                    seen.add(group)
                    track = self._tracks.setdefault((rule.name, severity, group), _Track())
                    track.value = value
                    met = value is not None and value >= threshold.value
                    notice = self._step(rule, severity, group, track, met=met, now=now, wall=wall)
                    if notice is not None:
                        (fired if notice.status == "firing" else resolved).append(notice)
                for (name, sev, group), track in list(self._tracks.items()):
                    if name == rule.name and sev == severity and group not in seen:
                        notice = self._step(
                            rule, severity, group, track, met=False, now=now, wall=wall
                        )
                        if notice is not None:
                            resolved.append(notice)
        fired.sort(key=lambda n: SEVERITIES.index(n.severity))
        resolved.sort(key=lambda n: -SEVERITIES.index(n.severity))
        changes = resolved + fired
        self.recent.extend(changes)
        return changes

    def _step(
        self,
        rule: AlertRule,
        severity: Severity,
        group: tuple[tuple[str, str], ...],
        track: _Track,
        *,
        met: bool,
        now: float,
        wall: float,
    ) -> AlertNotice | None:
        threshold = rule.threshold(severity)
        labels = {"alertname": rule.name, "severity": severity, **dict(group)}
        if not met:
            track.pending_since = None
            if track.firing:
                track.firing = False
                ALERTS_FIRING.labels(rule.name, severity).set(self._count(rule.name, severity))
                return AlertNotice(
                    rule.name, severity, "resolved", labels, track.value,
                    threshold.value, rule.summary, track.started_wall, wall,
                )  # fmt: skip
            return None
        if track.pending_since is None:
            track.pending_since = now
        if not track.firing and now - track.pending_since >= threshold.for_s:
            track.firing = True
            track.started_wall = wall
            ALERTS_FIRING.labels(rule.name, severity).set(self._count(rule.name, severity))
            return AlertNotice(
                rule.name, severity, "firing", labels, track.value,
                threshold.value, rule.summary, wall,
            )  # fmt: skip
        return None

    def _count(self, name: str, severity: str) -> int:
        tracks = self._tracks.items()
        return sum(1 for (n, s, _), t in tracks if n == name and s == severity and t.firing)

    def recent_notices(self, limit: int | None = None) -> list[AlertNotice]:
        """The last notices (oldest first), at most ``limit`` of them."""
        with self._lock:
            notices = list(self.recent)
        return notices[-limit:] if limit else notices

    def active(self) -> list[dict[str, Any]]:
        """The alerts firing now, with their labels and current value."""
        with self._lock:
            tracks = list(self._tracks.items())
        out = []
        for (name, severity, group), track in tracks:
            if track.firing:
                out.append(
                    {
                        "name": name,
                        "severity": severity,
                        "labels": {"alertname": name, "severity": severity, **dict(group)},
                        "value": track.value,
                        "starts_at": track.started_wall,
                        "summary": self.rules[name].summary,
                    }
                )
        return out

    async def tick(self) -> list[AlertNotice]:
        """Run ``before``, evaluate, and hand every change to ``notify``."""
        if self._before is not None:
            await self._before()
        # collecting reads /proc for every agent: off the event loop (state is ours alone)
        changes = await asyncio.to_thread(self.evaluate)
        if self._notify is not None:
            for notice in changes:
                result = self._notify(notice)
                if inspect.isawaitable(result):
                    await result
        return changes

    async def run(self) -> None:
        """Evaluate every ``interval`` seconds until cancelled."""
        while True:
            await self.tick()
            await self.clock.sleep(self.interval)


# -- defaults ---------------------------------------------------------------------------
def default_rules() -> list[AlertRule]:
    """The rules every node evaluates unless configured otherwise (see docs/observability.md)."""
    return [
        AlertRule(
            "ModelErrorRate", "ratio", "stalwart_model_errors_total",
            Threshold(0.05, 120), Threshold(0.25, 120),
            "Share of model requests failing over 5 minutes",
            by=("model",), denominator="stalwart_model_requests_total",
        ),
        AlertRule(
            "BreakerOpen", "count", "stalwart_breaker_state",
            Threshold(1, 0), Threshold(1, 300),
            "A circuit breaker is open (critical when open for 5 minutes)",
            by=("dependency",), equals=1.0,
        ),
        AlertRule(
            "RestartStorm", "increase", "stalwart_agent_restarts_total",
            Threshold(3, 0), Threshold(5, 0),
            "Agent restarts in the last 5 minutes",
            by=("agent",),
        ),
        AlertRule(
            "TaskFailureRate", "ratio", "stalwart_tasks_finished_total",
            Threshold(0.05, 300), Threshold(0.2, 300),
            "Share of finished tasks that failed over 15 minutes",
            match=(("outcome", "failed"),), denominator="stalwart_tasks_finished_total",
            window_s=900,
        ),
        AlertRule(
            "ProlongedDegradation", "count", "stalwart_degraded",
            Threshold(1, 120), Threshold(1, 900),
            "A component has run degraded (fallback model, tool down) for too long",
            by=("component",), equals=1.0,
        ),
        AlertRule(
            "BudgetLimit", "max", "stalwart_budget_used_ratio",
            Threshold(0.8, 0), Threshold(1.0, 0),
            "Spend as a share of its limit (warning near, critical at or over)",
            by=("scope",),
        ),
        AlertRule(
            "MemoryGrowth", "delta", "stalwart_agent_resident_memory_bytes",
            Threshold(256 * 2**20, 600), Threshold(1024 * 2**20, 600),
            "Growth of an agent's resident memory over 30 minutes",
            by=("agent",), window_s=1800,
        ),
        AlertRule(
            "TasksShed", "increase", "stalwart_tasks_shed_total",
            Threshold(10, 0), Threshold(100, 0),
            "Tasks refused at admission (429) in the last 5 minutes: sustained overload",
            by=("agent",),
        ),
        AlertRule(
            "ReadinessFailing", "count", "stalwart_ready",
            Threshold(1, 30), Threshold(1, 120),
            "The node is not ready (see /readyz for the failing check)",
            equals=0.0,
        ),
    ]  # fmt: skip


# -- export -----------------------------------------------------------------------------
def _selector(metric: str, match: tuple[tuple[str, str], ...]) -> str:
    if not match:
        return metric
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in match)
    return f"{metric}{{{inner}}}"


def _seconds(value: float) -> str:
    return f"{round(value)}s"


def promql(rule: AlertRule) -> str:
    """The rule's measure as a PromQL expression (without the threshold)."""
    by = f" by ({', '.join(rule.by)})" if rule.by else ""
    sel = _selector(rule.metric, rule.match)
    window = f"[{_seconds(rule.window_s)}]"
    if rule.kind in ("max", "sum"):
        return f"{rule.kind}{by} ({sel})"
    if rule.kind == "count":
        return f"count{by} ({sel} == {rule.equals:g})"
    if rule.kind == "increase":
        return f"sum{by} (increase({sel}{window}))"
    if rule.kind == "delta":
        return f"max{by} (delta({sel}{window}))"
    assert rule.denominator is not None
    den = _selector(rule.denominator, rule.denominator_match)
    return f"sum{by} (increase({sel}{window})) / sum{by} (increase({den}{window}))"


def prometheus_rules(rules: Iterable[AlertRule], *, group: str = "stalwart") -> str:
    """A Prometheus rules file (YAML) with one rule per rule and severity."""
    lines = ["groups:", f"  - name: {json.dumps(group)}", "    rules:"]
    for rule in rules:
        for severity in SEVERITIES:
            t = rule.threshold(severity)
            lines += [
                f"      - alert: {rule.name}",
                f"        expr: {json.dumps(f'{promql(rule)} >= {t.value:g}')}",
                f"        for: {_seconds(t.for_s)}",
                "        labels:",
                f"          severity: {severity}",
                "        annotations:",
                f"          summary: {json.dumps(rule.summary)}",
            ]
    return "\n".join(lines) + "\n"


def _ratio(num: float, den: float) -> float | None:
    """``num / den``; with nothing in the denominator, 1 if anything failed, else no value.

    Failures with no requests are calls refused before any request went out: a breaker
    open through a full outage rejects every model call, so ``stalwart_model_errors_total``
    grows while ``stalwart_model_requests_total`` stands still. Reading that as "no data"
    resolved ModelErrorRate in the middle of the outage. PromQL computes +Inf there and
    keeps firing; 1 (everything failed) does too, and stays JSON-safe in notices."""
    if den > 0:
        return num / den
    return 1.0 if num > 0 else None


# -- configuration ----------------------------------------------------------------------
_RULE_KEYS = {
    "name", "kind", "metric", "warning", "critical", "summary", "by", "match", "denominator",
    "denominator_match", "equals", "window_s", "disabled",
}  # fmt: skip


def _threshold(rule: str, which: str, raw: Any) -> Threshold:
    if not isinstance(raw, dict) or "value" not in raw or set(raw) - {"value", "for_s"}:
        raise ConfigError(f"alert rule {rule}: {which} must be {{value = N, for_s = S}}")
    try:
        return Threshold(float(raw["value"]), float(raw.get("for_s", 0.0)))
    except (TypeError, ValueError):
        raise ConfigError(f"alert rule {rule}: {which} values must be numbers") from None


def load_rules(path: str, base: Iterable[AlertRule] | None = None) -> list[AlertRule]:
    """The rules of TOML file ``path`` (``[[rule]]`` tables) merged over ``base``.

    ``base`` defaults to :func:`default_rules`. A table whose ``name`` is a base
    rule changes only the keys it gives (``warning = {value = 5, for_s = 60}``);
    ``disabled = true`` drops it; a new name adds a rule (``kind``, ``metric``,
    ``warning``, ``critical`` and ``summary`` then required). Mistakes raise
    :class:`ConfigError` naming the rule and key.
    """
    import tomllib

    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"alert rules file {path!r}: {exc}") from None
    rules = {r.name: r for r in (default_rules() if base is None else base)}
    tables = doc.get("rule", [])
    if not isinstance(tables, list) or set(doc) - {"rule"}:
        raise ConfigError(f"alert rules file {path!r}: expected only [[rule]] tables")
    for raw in tables:
        name = raw.get("name")
        if not isinstance(name, str):
            raise ConfigError(f"alert rules file {path!r}: every [[rule]] needs a name")
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise ConfigError(f"alert rule {name}: unknown keys {sorted(unknown)}")
        if raw.get("disabled"):
            rules.pop(name, None)
            continue
        fields: dict[str, Any] = {k: v for k, v in raw.items() if k != "disabled"}
        for which in ("warning", "critical"):
            if which in fields:
                fields[which] = _threshold(name, which, fields[which])
        for key in ("by",):
            if key in fields:
                fields[key] = tuple(fields[key])
        for key in ("match", "denominator_match"):
            if key in fields:
                fields[key] = tuple(sorted((str(k), str(v)) for k, v in fields[key].items()))
        try:
            if name in rules:
                rules[name] = dataclasses.replace(rules[name], **fields)
            else:
                rules[name] = AlertRule(**fields)
        except TypeError as exc:
            raise ConfigError(f"alert rule {name}: {exc}") from None
    return list(rules.values())
