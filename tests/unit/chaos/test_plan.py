"""The fault plan: deterministic, bounded, every kind present, within the app's resilience."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from stalwart.chaos import KINDS, PlanConfig, UndoStack, make_plan
from stalwart.cli._chaos import parse_duration

CFG = PlanConfig(
    duration=60.0,
    seed=7,
    agents=("triage", "resolver"),
    fallback_models=("strong",),
    models=("strong", "weak"),
)


def test_the_plan_is_a_function_of_its_inputs():
    assert make_plan(CFG) == make_plan(CFG)
    other = make_plan(_reseed(8))
    assert other != make_plan(CFG)


def _reseed(seed: int) -> PlanConfig:
    import dataclasses

    return dataclasses.replace(CFG, seed=seed)


def test_every_kind_appears_and_every_fault_is_bounded_and_inside_the_run():
    plan = make_plan(CFG)
    assert {f.kind for f in plan} == set(KINDS)
    for f in plan:
        assert CFG.warmup <= f.at < CFG.duration - CFG.cooldown
        assert 0.0 <= f.duration <= CFG.max_fault
        assert f.at + f.duration <= CFG.duration - CFG.cooldown + 1e-9


def test_dependency_faults_stay_within_what_the_app_survives():
    for seed in range(20):
        for f in make_plan(_reseed(seed)):
            if f.kind == "sim" and set(f.params) != {"latency_ms"}:
                # outages, hangs and errors only where the chain has a fallback
                assert f.target == "strong", f
            if f.kind == "sim" and f.target.startswith("tool:"):
                assert set(f.params) == {"latency_ms"}, f  # tools are only slowed
            if f.kind == "proxy":
                assert not f.params.get("reset"), f


def test_undo_runs_each_action_once_newest_first_even_at_exit():
    done: list[str] = []
    undo = UndoStack()
    a = undo.push("a", lambda: done.append("a"))
    undo.push("b", lambda: done.append("b"))
    undo.push("bad", lambda: 1 / 0)  # a failing undo does not stop the others
    assert undo.run(a) and not undo.run(a)
    assert undo.pending() == ["b", "bad"]
    assert undo.run_all() == 2
    assert done == ["a", "b"]
    undo.close()
    assert undo.pending() == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("24h", 86400.0), ("1h30m", 5400.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_a_bad_duration_is_refused():
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("ten minutes")


def test_a_postgresql_restart_is_only_ever_planned_when_asked_for():
    import dataclasses

    from stalwart.chaos import OPT_IN

    assert "pg_restart" in OPT_IN and "pg_restart" not in KINDS
    assert all(f.kind != "pg_restart" for f in make_plan(CFG))
    asked = dataclasses.replace(CFG, kinds=(*KINDS, "pg_restart"), pg_restart_cmd="true")
    restarts = [f for f in make_plan(asked) if f.kind == "pg_restart"]
    assert restarts and all(f.params == {"cmd": "true"} for f in restarts)


async def test_the_pg_restart_fault_runs_the_given_command_on_postgresql_only(tmp_path):
    from stalwart.chaos import FaultSpec, Target, inject

    marker = tmp_path / "restarted"
    spec = FaultSpec("pg_restart", 0.0, 0.0, "store", {"cmd": f"touch {marker}"})
    t = Target(None, None, None, "a", None, None, UndoStack(), store_url="sqlite:///x.db")  # type: ignore[arg-type]
    assert (await inject(t, spec)).status == "skipped"  # not PostgreSQL: never restarted
    t.store_url = "postgresql://127.0.0.1/db"
    out = await inject(t, spec)
    assert out.status == "applied" and marker.exists()
    failing = FaultSpec("pg_restart", 0.0, 0.0, "store", {"cmd": "false"})
    assert (await inject(t, failing)).status == "error"
    no_cmd = FaultSpec("pg_restart", 0.0, 0.0, "store", {"cmd": None})
    assert (await inject(t, no_cmd)).status == "skipped"


def test_proxy_faults_reach_tool_proxies_only_when_there_are_some():
    """With tool proxies (stalwart verify's proxy mode) proxy faults land on them too;
    without, the seeded plan is what it was (no extra draw)."""
    base = PlanConfig(duration=60, seed=3, kinds=("proxy", "agent_kill"), agents=("a",))
    plain = make_plan(base)
    assert plain and {f.target for f in plain if f.kind == "proxy"} == {"sim"}
    tools = make_plan(dataclasses.replace(base, tool_proxies=("fetch", "order")))
    assert {f.target for f in tools if f.kind == "proxy"} <= {"sim", "tool:fetch", "tool:order"}
    assert any(f.target.startswith("tool:") for f in tools if f.kind == "proxy")
    only = make_plan(dataclasses.replace(base, tool_proxies=("order",), sim_proxy=False))
    assert {f.target for f in only if f.kind == "proxy"} == {"tool:order"}


def test_a_restart_limit_leaves_out_the_kills_that_would_exceed_it_per_window():
    base = PlanConfig(
        duration=200,
        seed=5,
        kinds=("agent_kill", "journal_corrupt", "sim", "proxy"),
        interval=2.0,
        agents=("a",),
    )
    restarting = ("agent_kill", "journal_corrupt", "file_corrupt")
    plain = make_plan(base)
    fitted = make_plan(dataclasses.replace(base, max_restarts=3, restart_period=30.0))
    kills = [f.at for f in fitted if f.kind in restarting]
    assert len(kills) < sum(f.kind in restarting for f in plain)
    # never more than 3 in any window (t - 30, t], and the other faults untouched
    assert all(sum(at - 30 < k <= at for k in kills) <= 3 for at in kills)
    assert [f for f in fitted if f.kind not in restarting] == [
        f for f in plain if f.kind not in restarting
    ]
    assert len(kills) >= 3 * (200 // 30) - 3  # still about 3 per window, not none
