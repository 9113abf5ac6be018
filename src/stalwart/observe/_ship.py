"""Metrics recorded in agent processes, shipped to the node (no shared files).

An agent process has its own copy of :data:`REGISTRY` (inherited from the fork
server, all zero). Code in the agent records metrics as usual
(``catalog.MODEL_REQUESTS.labels(...).inc()``); every heartbeat the agent's
:class:`MetricShipper` collects what changed since the last heartbeat — counter
and histogram *deltas*, gauge *values* — and sends them over its channel. The
node applies them to its own registry with :func:`apply_samples`, so
``/metrics`` on the node shows the sum over all agents (and the node itself).

Only what the agent changed is shipped: the shipper's baseline is taken when it
is created, so an agent never resets a node-side gauge it did not touch.

Gauges are *state*, so the node keeps them per process (``source``): a series
shows the largest value any live process shipped for it (an open breaker in one
agent is an open dependency), and when a process exits its values go with it
(:func:`forget_source`). Without that, an agent killed while its breaker was
open would leave the node reporting the breaker open for good: the restarted
agent starts at zero and, never having changed the gauge, ships nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from stalwart.observe._metrics import REGISTRY

__all__ = ["MetricShipper", "apply_samples", "forget_source"]

REJECTED = Counter(
    "stalwart_shipped_samples_rejected_total",
    "Metric samples from agents the node could not apply (unknown name or labels)",
    registry=REGISTRY,
)

Sample = dict[str, Any]
_Key = tuple[str, tuple[tuple[str, str], ...]]

# node side: gauge series -> {source: value}, per registry; touched only from the node's
# event loop (the frames of every agent channel are read there)
_GAUGES: dict[int, dict[_Key, dict[str, float]]] = {}


class MetricShipper:
    """Agent side: what changed in ``registry`` since the last :meth:`collect`."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._registry = registry
        self._last: dict[_Key, Any] = {}
        self.collect()  # the baseline: nothing before this moment is shipped

    def collect(self) -> list[Sample]:
        out: list[Sample] = []
        for family in self._registry.collect():
            if family.type in ("counter", "gauge"):
                suffix = "_total" if family.type == "counter" else ""
                for s in family.samples:
                    if s.name != family.name + suffix:
                        continue  # *_created
                    key = (s.name, tuple(sorted(s.labels.items())))
                    prev = self._last.get(key)
                    self._last[key] = s.value
                    if family.type == "gauge":
                        if (prev is not None and prev != s.value) or (prev is None and s.value):
                            out.append(
                                {"n": family.name, "k": "gauge", "l": s.labels, "v": s.value}
                            )
                    elif s.value - (prev or 0.0) > 0:
                        delta = s.value - (prev or 0.0)
                        out.append({"n": family.name, "k": "counter", "l": s.labels, "v": delta})
            elif family.type == "histogram":
                out.extend(self._histogram(family))
        return out

    def _histogram(self, family: Any) -> Iterable[Sample]:
        groups: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k != "le"}
            g = groups.setdefault(tuple(sorted(labels.items())), {"b": {}, "s": 0.0})
            if s.name == family.name + "_bucket":
                g["b"][s.labels["le"]] = s.value
            elif s.name == family.name + "_sum":
                g["s"] = s.value
        for key, g in groups.items():
            cumulative = [g["b"][le] for le in sorted(g["b"], key=float)]
            buckets = [c - (cumulative[i - 1] if i else 0.0) for i, c in enumerate(cumulative)]
            state = (tuple(buckets), g["s"])
            prev = self._last.get((family.name, key))
            self._last[(family.name, key)] = state
            old_b, old_s = prev if prev is not None else ((0.0,) * len(buckets), 0.0)
            deltas = [b - o for b, o in zip(buckets, old_b, strict=False)]
            if any(d > 0 for d in deltas):
                yield {"n": family.name, "k": "histogram", "l": dict(key), "b": deltas,
                       "v": g["s"] - old_s}  # fmt: skip


def apply_samples(
    samples: Iterable[Sample], registry: CollectorRegistry = REGISTRY, *, source: str = ""
) -> int:
    """Node side: add shipped deltas (set gauges) to ``registry``; returns how many applied.

    ``source`` names the process that shipped them (its gauges are kept apart, see the
    module docstring).
    """
    collectors = registry._names_to_collectors
    gauges = _GAUGES.setdefault(id(registry), {})
    applied = 0
    for sample in samples:
        try:
            metric: Any = collectors.get(sample["n"])
            if metric is None:
                raise KeyError(sample["n"])
            labels = sample.get("l") or {}
            child = metric.labels(**labels) if labels else metric
            kind = sample["k"]
            if kind == "counter":
                child.inc(float(sample["v"]))
            elif kind == "gauge":
                key = (str(sample["n"]), tuple(sorted(labels.items())))
                values = gauges.setdefault(key, {})
                values[source] = float(sample["v"])
                child.set(max(values.values()))
            elif kind == "histogram":
                buckets = child._buckets
                deltas = sample["b"]
                if len(buckets) != len(deltas):
                    raise ValueError("bucket layout differs")
                for bucket, delta in zip(buckets, deltas, strict=True):
                    if delta > 0:
                        bucket.inc(delta)
                child._sum.inc(float(sample["v"]))
            else:
                raise ValueError(kind)
            applied += 1
        except (KeyError, ValueError, TypeError, AttributeError):
            REJECTED.inc()
    return applied


def forget_source(source: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Node side: ``source`` has exited; each gauge it shipped falls back to the largest
    value another live process shipped, or to 0."""
    gauges = _GAUGES.get(id(registry), {})
    collectors = registry._names_to_collectors
    for key, values in list(gauges.items()):
        if values.pop(source, None) is None:
            continue
        name, labels = key
        metric: Any = collectors.get(name)
        if metric is not None:
            child = metric.labels(**dict(labels)) if labels else metric
            child.set(max(values.values(), default=0.0))
        if not values:
            del gauges[key]
