"""Metric deltas recorded in one registry (an agent's) applied to another (the node's)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stalwart.observe import MetricShipper, apply_samples


def pair() -> tuple[CollectorRegistry, CollectorRegistry, dict, dict]:
    out = []
    for _ in range(2):
        r = CollectorRegistry()
        m = {
            "c": Counter("x_calls", "", ["tool"], registry=r),
            "g": Gauge("x_degraded", "", ["component"], registry=r),
            "h": Histogram("x_seconds", "", ["model"], buckets=(0.1, 1, 10), registry=r),
            "u": Gauge("x_untouched", "", registry=r),
        }
        out.append((r, m))
    (agent, am), (node, nm) = out
    return agent, node, am, nm


def value(r: CollectorRegistry, name: str, **labels: str) -> float | None:
    return r.get_sample_value(name, labels)


def test_counters_histograms_and_gauges_ship_as_deltas():
    agent, node, am, nm = pair()
    nm["u"].set(7)  # the node's own value: an agent that never touched it must not reset it
    nm["c"].labels("search").inc(10)  # node-side increments add up with the agents'
    shipper = MetricShipper(agent)
    am["c"].labels("search").inc(3)
    am["g"].labels("model").set(1)
    am["h"].labels("gpt").observe(0.5)
    am["h"].labels("gpt").observe(5)
    assert apply_samples(shipper.collect(), node) == 3
    assert shipper.collect() == []  # nothing changed since
    am["c"].labels("search").inc(2)
    am["h"].labels("gpt").observe(0.05)
    am["g"].labels("model").set(0)
    apply_samples(shipper.collect(), node)
    assert value(node, "x_calls_total", tool="search") == 15
    assert value(node, "x_degraded", component="model") == 0
    assert value(node, "x_seconds_count", model="gpt") == 3
    assert value(node, "x_seconds_bucket", model="gpt", le="0.1") == 1
    assert value(node, "x_seconds_bucket", model="gpt", le="1.0") == 2
    assert abs(value(node, "x_seconds_sum", model="gpt") - 5.55) < 1e-9
    assert value(node, "x_untouched") == 7


def test_unknown_or_mismatched_samples_are_rejected_not_raised():
    _agent, node, _am, _nm = pair()
    bad = [
        {"n": "nope", "k": "counter", "l": {}, "v": 1},
        {"n": "x_calls", "k": "counter", "l": {"wrong": "x"}, "v": 1},
        {"n": "x_seconds", "k": "histogram", "l": {"model": "m"}, "b": [1], "v": 1},
    ]
    assert apply_samples(bad, node) == 0


def test_a_gauge_shows_the_largest_live_value_and_an_exited_process_takes_its_own_along():
    from stalwart.observe import forget_source

    _agent, node, _am, _nm = pair()
    opened = [{"n": "x_degraded", "k": "gauge", "l": {"component": "model"}, "v": 1}]
    closed = [{"n": "x_degraded", "k": "gauge", "l": {"component": "model"}, "v": 0}]
    apply_samples(opened, node, source="triage/100")
    apply_samples(closed, node, source="resolver/101")
    assert value(node, "x_degraded", component="model") == 1  # open somewhere: open
    forget_source("triage/100", node)  # killed while open: the restart ships nothing
    assert value(node, "x_degraded", component="model") == 0
    apply_samples(opened, node, source="resolver/101")
    forget_source("nobody/1", node)  # a process that shipped nothing changes nothing
    assert value(node, "x_degraded", component="model") == 1
    forget_source("resolver/101", node)
    assert value(node, "x_degraded", component="model") == 0
