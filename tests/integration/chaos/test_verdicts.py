"""The chaos verdict can fail: a fault beyond the app's resilience is caught by the comparison."""

from __future__ import annotations

import pytest

from stalwart.chaos import ChaosConfig, FaultSpec, TargetConfig, run_chaos


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_tool_outage_beyond_the_apps_resilience_fails_the_run_with_the_changed_answers():
    # lookup_order down for 4 s: its breaker opens and the model answers from the
    # knowledge base instead -- the app's declared degradation, a different answer
    outage = FaultSpec("sim", 1.0, 4.0, "tool:orders", {"outage": True})
    cfg = ChaosConfig(
        target=TargetConfig(app="examples.helpdesk.app:app", seed=4),
        duration=7.0,
        rate=12.0,
        kinds=(),
        extra=(outage,),
    )
    result = await run_chaos(cfg)
    assert result["faults"][0]["status"] == "applied"
    assert result["lost"] == 0 and result["duplicate_side_effects"] == 0
    assert result["results_match_fault_free"] is False and not result["passed"]
    changed = result["mismatches"]
    assert changed and all(m["run"] != m["reference"] for m in changed)
    assert any("lookup_order" in str(m["run"]) for m in changed)  # the degraded answer, shown


@pytest.mark.timeout(120)
async def test_a_run_in_which_no_fault_took_effect_is_not_run_never_passed():
    # 4 s: the 2 s warm-up and 3 s cool-down leave no room for a fault
    progress: list[str] = []
    cfg = ChaosConfig(
        target=TargetConfig(app="examples.helpdesk.app:app", seed=5),
        duration=4.0,
        rate=5.0,
        kinds=("agent_kill",),
    )
    result = await run_chaos(cfg, progress=progress.append)
    assert result["faults_applied"] == 0 and result["exercised"] is False
    assert not result["passed"] and result["lost"] == 0
    assert any("--duration" in line for line in progress)  # says how to make it run
    from stalwart.cli._chaos import render

    assert "NOT RUN" in render(result) and "PASSED" not in render(result)


def test_inputs_that_fail_on_every_task_stop_the_run_before_it_passes(tmp_path):
    """The warehouse fed helpdesk tickets: every task fails (KeyError 'sku'). While
    --inputs defaulted to the demo's tickets for any --app, this load run failed all 40
    of its tasks, measured a capacity of 0, sent nothing at any level and said PASSED."""
    import subprocess
    import sys

    out = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, "-m", "stalwart.cli._chaos", "load", "--app",
         "examples.warehouse.app:app", "--inputs", "stalwart.demo.tickets:generate",
         "--duration", "2s", "--calibrate", "10", "--out", str(out)],
        capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "all 10 calibration tasks sent to agent 'restock' failed" in done.stderr
    assert "KeyError: 'sku'" in done.stderr and "--inputs" in done.stderr
    assert not out.exists()  # no result to mistake for a run
