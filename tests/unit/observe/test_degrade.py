"""Degradations are logged, counted and timed on the injected clock (GD-3)."""

from __future__ import annotations

from stalwart.observe import REGISTRY, Degradations, EventBus
from stalwart.testing import FakeClock


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_degradation_is_an_event_a_gauge_a_count_and_a_duration():
    clock = FakeClock()
    bus = EventBus(log=False)
    d = Degradations(clock=clock, events=bus)
    seconds0 = value("stalwart_degradation_seconds_total", component="model:unit")
    count0 = value("stalwart_degradation_events_total", component="model:unit", kind="fallback")
    assert d.begin("model:unit", "fallback", to="sim-weak")
    assert not d.begin("model:unit", "fallback")  # already degraded: one episode
    assert value("stalwart_degraded", component="model:unit") == 1
    clock.advance(42)
    assert d.active()["model:unit"]["seconds"] == 42
    assert d.end("model:unit") == 42
    assert d.end("model:unit") is None
    assert value("stalwart_degraded", component="model:unit") == 0
    assert value("stalwart_degradation_seconds_total", component="model:unit") - seconds0 == 42
    assert (
        value("stalwart_degradation_events_total", component="model:unit", kind="fallback") - count0
        == 1
    )
    started, ended = bus.recent()
    assert (started.name, started["to"]) == ("degradation_started", "sim-weak")
    assert (ended.name, ended["duration_s"]) == ("degradation_ended", 42)


def test_the_context_manager_ends_what_it_began():
    clock = FakeClock()
    d = Degradations(clock=clock, events=EventBus(log=False))
    with d.degraded("tool:unit", "tool_unavailable"):
        clock.advance(3)
    assert d.active() == {}
