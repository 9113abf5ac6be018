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


def test_lc2s_plan_is_known_before_the_run_and_kept_within_the_app_s_intensity():
    bank = load_app(BANK)  # default intensity: 5 in 60 s
    s = LoadSettings()
    cfg = ChaosConfig(
        target=TargetConfig(app=BANK, seed=7),
        duration=s.chaos_s,
        interval=_chaos_interval(s.chaos_s),
        fit_intensity=True,
    )
    faults = planned_faults(cfg, bank, tool_proxies=())
    assert faults == planned_faults(cfg, bank, tool_proxies=())  # seeded: the same plan
    load = chaos_restarts(bank, [], seed=7, settings=s)
    assert load == restart_load(faults, bank.period)
    kills = [f for f in faults if f.kind in ("agent_kill", "journal_corrupt", "file_corrupt")]
    assert load.total == len(kills) and load.busiest == len(kills)  # a 45 s run: one window
    # one restart short of the intensity, the rest of the plan as it was: the unfitted plan
    # (what `stalwart chaos` runs) outruns the default intensity by itself
    assert load.busiest == bank.intensity - 1
    unfitted = planned_faults(dataclasses.replace(cfg, fit_intensity=False), bank)
    assert restart_load(unfitted, bank.period).busiest > bank.intensity
    assert [f for f in faults if f not in kills] == [
        f for f in unfitted if f.kind not in ("agent_kill", "journal_corrupt", "file_corrupt")
    ]
    # both groups LC-2 needs are still in it: kills and checkpoint corruption
    assert {f.kind for f in kills} >= {"agent_kill"} and {f.kind for f in kills} & {
        "journal_corrupt",
        "file_corrupt",
    }
    # so preflight has nothing to warn about, and the plan expects no give-up
    items = [i for i in ITEMS if i.id == "LC-2"]
    assert preflight_warnings(bank, items) == []
    assert plan(bank, BANK, items, allow_real=False)["items"][0]["expect"] == ""
    tight = dataclasses.replace(bank, intensity=2)  # one kill per window at most
    assert chaos_restarts(tight, [], settings=s).busiest == 1


def test_a_give_up_on_verifys_kill_rate_is_not_run_and_within_the_intensity_failed():
    bank = load_app(BANK)
    s = LoadSettings()
    cfg = ChaosConfig(
        target=TargetConfig(app=BANK, seed=7),
        duration=s.chaos_s,
        interval=_chaos_interval(s.chaos_s),
    )
    over_plan = restart_load(planned_faults(cfg, bank, tool_proxies=()), bank.period)
    assert over_plan.exceeds(bank.intensity)  # an unfitted plan
    error = "the node's root supervisor gave up (its restart intensity was exceeded)"
    over = gave_up_outcome(s, over_plan, bank, error)
    assert over.status == "not-run"
    assert over.evidence["planned_restarts"]["within_intensity"] is False
    assert "[supervision] intensity) to at least" in (over.remediation or "")
    # LC-2's own plan fits: a give-up under it is the app's failure
    within = gave_up_outcome(s, chaos_restarts(bank, [], settings=s), bank, error)
    assert within.status == "failed"
    assert within.evidence["planned_restarts"]["within_intensity"] is True
    assert "fit its restart intensity" in (within.remediation or "")
