"""The breaker's resilience4j semantics that issue 18 found missing: evaluation after every
outcome, the half-open trials as one window, max wait in half-open, operator states and
overrides shared through a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stalwart.errors import CircuitOpen, ConfigError
from stalwart.observe import REGISTRY
from stalwart.resilience import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    OverrideFile,
)
from stalwart.testing import FakeClock

S = BreakerState


def make(clock: FakeClock, name: str = "dep", **config: Any) -> CircuitBreaker:
    settings: dict[str, Any] = {"window_size": 10, "minimum_calls": 5, "wait_duration_in_open": 5.0}
    settings.update(config)
    return CircuitBreaker(name, BreakerConfig(**settings), clock=clock)


def run(breaker: CircuitBreaker, outcomes: str, duration: float = 0.01) -> list[BreakerState]:
    """Feed ``outcomes`` (F = failure, S = success); the state after each one."""
    states = []
    for outcome in outcomes:
        permit = breaker.acquire_permission()
        if outcome == "F":
            breaker.on_failure(permit, duration)
        else:
            breaker.on_success(permit, duration)
        states.append(breaker.state)
    return states


# -- the exact sequences of issue 18 -------------------------------------------------------


def test_fffss_opens_on_the_last_success(clock: FakeClock) -> None:
    # minimum_calls=5, 50 %: after F,F,F,S,S the window is at 60 % failures
    breaker = make(clock)
    assert run(breaker, "FFFSS") == [S.CLOSED] * 4 + [S.OPEN]


def test_slow_successes_coming_first_open_when_the_window_fills(clock: FakeClock) -> None:
    # slow calls first, fast ones last: the slow-call rate is checked on the fast ones too
    breaker = make(clock, slow_call_duration=1.0, slow_call_rate_threshold=60)
    for _ in range(3):
        breaker.on_success(breaker.acquire_permission(), 2.0)
    assert breaker.state is S.CLOSED
    run(breaker, "SS", duration=0.01)  # 3 of 5 slow: 60 %
    assert breaker.state is S.OPEN


def test_fsss_in_half_open_with_a_50_percent_threshold_closes(clock: FakeClock) -> None:
    breaker = make(clock, permitted_calls_in_half_open=4)
    run(breaker, "FFFFF")
    clock.advance(5.0)
    assert breaker.state is S.HALF_OPEN
    assert run(breaker, "FSSS") == [S.HALF_OPEN] * 3 + [S.CLOSED]


def test_ffss_in_half_open_reopens_at_exactly_the_threshold(clock: FakeClock) -> None:
    breaker = make(clock, permitted_calls_in_half_open=4)
    run(breaker, "FFFFF")
    clock.advance(5.0)
    assert run(breaker, "FFSS") == [S.HALF_OPEN] * 3 + [S.OPEN]


def test_successes_below_minimum_calls_decide_nothing(clock: FakeClock) -> None:
    breaker = make(clock)
    assert run(breaker, "FFFS") == [S.CLOSED] * 4  # 4 < minimum_calls


def test_time_window_evaluates_on_success_too(clock: FakeClock) -> None:
    breaker = make(clock, sliding_window="time", window_size=10.0, minimum_calls=5)
    run(breaker, "FFF")
    clock.advance(1.0)
    assert run(breaker, "SS") == [S.CLOSED, S.OPEN]


def test_time_window_forgets_failures_before_evaluating(clock: FakeClock) -> None:
    breaker = make(clock, sliding_window="time", window_size=10.0, minimum_calls=5)
    run(breaker, "FFF")
    clock.advance(11.0)  # the failures aged out
    assert run(breaker, "SSSSS") == [S.CLOSED] * 5


# -- max wait in half-open -------------------------------------------------------------------


def test_undecided_half_open_reopens_after_max_wait(clock: FakeClock) -> None:
    breaker = make(clock, permitted_calls_in_half_open=2, max_wait_in_half_open=3.0)
    run(breaker, "FFFFF")
    clock.advance(5.0)
    stuck = breaker.acquire_permission()  # a trial that never ends
    clock.advance(2.9)
    assert breaker.state is S.HALF_OPEN
    clock.advance(0.1)
    assert breaker.state is S.OPEN
    breaker.on_success(stuck, 0.01)  # its late outcome belongs to the old period: dropped
    assert breaker.state is S.OPEN
    clock.advance(5.0)
    assert breaker.state is S.HALF_OPEN


def test_without_max_wait_half_open_waits_for_its_trials(clock: FakeClock) -> None:
    breaker = make(clock, permitted_calls_in_half_open=1)
    run(breaker, "FFFFF")
    clock.advance(5.0)
    permit = breaker.acquire_permission()
    clock.advance(86_400.0)
    assert breaker.state is S.HALF_OPEN
    breaker.on_success(permit, 0.01)
    assert breaker.state is S.CLOSED


@pytest.mark.parametrize("value", [-1.0, float("nan"), 100_000.0])
def test_bad_max_wait_is_rejected(value: float) -> None:
    with pytest.raises(ConfigError, match="max_wait_in_half_open"):
        BreakerConfig(max_wait_in_half_open=value)


# -- operator states -------------------------------------------------------------------------


def test_forced_open_rejects_until_closed_and_never_half_opens(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.transition_to(S.FORCED_OPEN)
    clock.advance(3600.0)
    assert breaker.state is S.FORCED_OPEN
    with pytest.raises(CircuitOpen, match="forced open by an operator"):
        breaker.acquire_permission()
    breaker.transition_to(S.CLOSED)
    assert run(breaker, "S") == [S.CLOSED]


def test_disabled_lets_everything_through_and_records_nothing(clock: FakeClock) -> None:
    breaker = make(clock)
    run(breaker, "FFFFF")
    breaker.transition_to(S.DISABLED)  # from open: an operator's way out
    assert run(breaker, "F" * 20) == [S.DISABLED] * 20
    assert breaker.snapshot().calls == 0


def test_metrics_only_records_but_never_transitions(clock: FakeClock) -> None:
    breaker = make(clock)
    breaker.transition_to(S.METRICS_ONLY)
    assert run(breaker, "F" * 8) == [S.METRICS_ONLY] * 8
    snap = breaker.snapshot()
    assert snap.calls == 8 and snap.failure_rate == 100.0


def test_a_permit_from_before_an_operator_transition_is_dropped(clock: FakeClock) -> None:
    breaker = make(clock, minimum_calls=1, window_size=1)
    permit = breaker.acquire_permission()
    breaker.transition_to(S.METRICS_ONLY)
    breaker.on_failure(permit, 0.01)
    assert breaker.snapshot().calls == 0


def test_gauge_carries_resilience4j_state_order(clock: FakeClock) -> None:
    breaker = make(clock, name="dep-gauge-order")
    seen = []
    for state in (S.FORCED_OPEN, S.DISABLED, S.METRICS_ONLY, S.HALF_OPEN, S.OPEN, S.CLOSED):
        breaker.transition_to(state)
        value = REGISTRY.get_sample_value(
            "stalwart_breaker_state", {"dependency": "dep-gauge-order"}
        )
        seen.append(value)
    assert seen == [4.0, 3.0, 5.0, 2.0, 1.0, 0.0]


@pytest.mark.parametrize(
    ("text", "state"),
    [("forced_open", S.FORCED_OPEN), ("FORCED-OPEN", S.FORCED_OPEN), (" disabled ", S.DISABLED)],
)
def test_states_parse_from_their_labels(text: str, state: BreakerState) -> None:
    assert BreakerState.parse(text) is state


def test_an_unknown_state_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="forced_open, metrics_only"):
        BreakerState.parse("ajar")


# -- overrides -------------------------------------------------------------------------------


def test_an_override_applies_to_a_breaker_created_later(clock: FakeClock) -> None:
    registry = BreakerRegistry(clock=clock)
    registry.set_override("later", S.FORCED_OPEN)
    breaker = registry.get("later")
    assert breaker.state is S.FORCED_OPEN
    registry.set_override("later", S.CLOSED)
    assert breaker.state is S.CLOSED and registry.overrides() == {}
    registry.remove("later")
    assert registry.get("later").state is S.CLOSED


def test_one_off_transitions_do_not_stick(clock: FakeClock) -> None:
    registry = BreakerRegistry(clock=clock)
    registry.get("dep", BreakerConfig(wait_duration_in_open=5.0))
    registry.set_override("dep", S.OPEN)
    assert registry.overrides() == {}
    clock.advance(5.0)
    assert registry.get("dep").state is S.HALF_OPEN


def test_overrides_reach_another_registry_through_the_file(
    clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "breakers.json"
    node = BreakerRegistry(clock=clock, overrides_file=path)
    agent = BreakerRegistry(clock=clock, overrides_file=path)
    existing = agent.get("openai:gpt-4o")
    node.set_override("openai:gpt-4o", S.FORCED_OPEN)
    node.set_override("tool:search", S.DISABLED)
    assert existing.state is S.CLOSED  # not until the agent's next refresh
    agent.refresh()
    assert existing.state is S.FORCED_OPEN
    assert agent.get("tool:search").state is S.DISABLED
    # a breaker the agent moved by its own rules since is not moved back by an old entry
    existing.transition_to(S.CLOSED)
    agent.refresh()
    assert existing.state is S.CLOSED
    node.set_override("openai:gpt-4o", S.FORCED_OPEN)
    agent.refresh()
    assert existing.state is S.FORCED_OPEN
    epoch, entries = OverrideFile(path).read()
    assert entries["openai:gpt-4o"].state == "forced_open" and len(epoch) == 32


def test_a_file_created_anew_is_read_from_its_first_order(clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "breakers.json"
    node = BreakerRegistry(clock=clock, overrides_file=path)
    agent = BreakerRegistry(clock=clock, overrides_file=path)
    node.set_override("a", S.DISABLED)
    node.set_override("b", S.DISABLED)
    agent.refresh()
    path.unlink()  # the node restarted (or a test cleared the file): sequence numbers restart
    node.set_override("b", S.FORCED_OPEN)
    agent.refresh()
    assert agent.get("b").state is S.FORCED_OPEN


def test_a_corrupt_override_file_is_reported_and_changes_nothing(
    clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "breakers.json"
    path.write_text("{not json")
    registry = BreakerRegistry(clock=clock, overrides_file=path)
    breaker = registry.get("dep")
    registry.refresh()
    assert breaker.state is S.CLOSED
    with pytest.raises(ConfigError, match="delete it to clear"):
        registry.set_override("dep", S.DISABLED)
