"""LC-2's chaos plan against the app's restart intensity: the restarts the seeded plan
forces in one window, and the verdict when the node's root supervisor gives up."""

from __future__ import annotations

import dataclasses

import pytest

from stalwart.agent import load_app
from stalwart.chaos import FaultSpec
from stalwart.chaos._chaos import ChaosConfig, planned_faults
from stalwart.chaos._plan import restart_load
from stalwart.chaos._target import TargetConfig
from stalwart.verify._checks_load import (
    LoadSettings,
    _chaos_interval,
    chaos_restarts,
    gave_up_outcome,
)
from stalwart.verify._model import ITEMS
from stalwart.verify._preflight import plan, preflight_warnings

pytestmark = pytest.mark.timeout(60)

BANK = "tests.fixtures.foreign_apps.bank_support:app"


def _spec(kind: str, at: float, target: str = "a") -> FaultSpec:
    return FaultSpec(kind, at, 0.0, target)


def test_restarts_in_the_busiest_window_as_the_supervisor_counts_them():
    plan = [
        _spec("agent_kill", 1.0, "a"),
        _spec("sim", 2.0, "model"),  # no restart
        _spec("journal_corrupt", 5.0, "store"),
        _spec("agent_stop", 6.0, "a"),  # a SIGSTOP shorter than the hang limit: none
        _spec("agent_kill", 9.0, "b"),
        _spec("node_kill", 9.5, "peer"),  # the second node: its own supervisor
        _spec("file_corrupt", 11.0, "store"),  # 10 s after the first kill: a new window
        _spec("agent_kill", 14.9, "a"),
    ]
    load = restart_load(plan, period=10.0)
    # windows (t - 10, t]: {5, 9, 11, 14.9} is the busiest; 1 and 11 are 10 s apart
    assert (load.busiest, load.window_start, load.total) == (4, 5.0, 5)
    assert load.per_target == {"a": 1, "b": 1, "store": 2}
    assert load.exceeds(3) and not load.exceeds(4)
    assert restart_load(plan, period=1.0).busiest == 1
    assert restart_load([], period=60.0).busiest == 0


def test_lc2s_plan_is_known_before_the_run_and_counted_against_the_app():
    bank = load_app(BANK)  # default intensity: 5 in 60 s
    s = LoadSettings()
    cfg = ChaosConfig(
        target=TargetConfig(app=BANK, seed=7),
        duration=s.chaos_s,
        interval=_chaos_interval(s.chaos_s),
    )
    faults = planned_faults(cfg, bank, tool_proxies=())
    assert faults == planned_faults(cfg, bank, tool_proxies=())  # seeded: the same plan
    load = chaos_restarts(bank, [], seed=7, settings=s)
    assert load == restart_load(faults, bank.period)
    kills = [f for f in faults if f.kind in ("agent_kill", "journal_corrupt", "file_corrupt")]
    assert load.total == len(kills) and load.busiest == len(kills)  # a 45 s run: one window
    assert load.busiest > bank.intensity  # the plan alone outruns the default intensity
    # preflight warns (it is no precondition: LC-2's kills stay on its own node), naming
    # the setting and the value that absorbs the plan
    items = [i for i in ITEMS if i.id == "LC-2"]
    (warning,) = preflight_warnings(bank, items)
    assert f"intensity) to at least {load.busiest}" in warning.fix
    (row,) = plan(bank, BANK, items, allow_real=False)["items"]
    assert row["expect"].startswith("not-run if its node gives up")
    raised = dataclasses.replace(bank, intensity=load.busiest)
    assert preflight_warnings(raised, items) == []
    assert plan(raised, BANK, items, allow_real=False)["items"][0]["expect"] == ""


def test_a_give_up_on_verifys_kill_rate_is_not_run_and_within_the_intensity_failed():
    bank = load_app(BANK)
    s = LoadSettings()
    load = chaos_restarts(bank, [], settings=s)
    error = "the node's root supervisor gave up (its restart intensity was exceeded)"
    over = gave_up_outcome(s, load, bank, error)
    assert over.status == "not-run"
    assert over.evidence["planned_restarts"]["within_intensity"] is False
    assert "[supervision] intensity) to at least" in (over.remediation or "")
    # the same give-up with an intensity that absorbs every planned kill: the app's failure
    absorbing = dataclasses.replace(bank, intensity=load.busiest)
    within = gave_up_outcome(s, load, absorbing, error)
    assert within.status == "failed"
    assert within.evidence["planned_restarts"]["within_intensity"] is True
    assert "fit its restart intensity" in (within.remediation or "")
