"""The OpenAI Agents SDK example on a real node, its agent process SIGKILLed at step
boundaries: same results, no model call re-made, no side effect repeated."""

from __future__ import annotations

import pathlib

import pytest
from examples.openai_agents_support.app import tickets
from tests.integration.adapters.oai_kill_app import run_support


@pytest.mark.timeout(90)
async def test_sigkilled_at_step_boundaries_it_ends_the_same_and_repeats_nothing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tickets(9, seed=3)
    clean = await run_support(tmp_path / "clean", work, kill_dir=None)
    kill_dir = tmp_path / "kills"
    kill_dir.mkdir()
    monkeypatch.setenv("OAI_KILL_DIR", str(kill_dir))
    monkeypatch.setenv("OAI_KILL_EVERY", "3")
    monkeypatch.setenv("OAI_KILL_MAX", "6")
    (tmp_path / "chaos").mkdir()
    chaotic = await run_support(tmp_path / "chaos", work, kill_dir=kill_dir)

    assert chaotic["kills"] >= 3, chaotic["kills"]
    for status, outcome in clean["results"].values():
        assert status == "succeeded" and outcome["status"] == "completed", outcome
    refunds = [o for _, o in clean["results"].values() if "Refunded" in str(o["answer"])]
    assert len(refunds) == 3  # the side-effect tool ran (every third ticket asks for one)
    # every task: the same result as the uninterrupted run
    assert chaotic["results"] == clean["results"]
    # no model call made again after a kill (counted at the simulated provider)
    assert chaotic["model_requests"] == clean["model_requests"] > 0
    # no side effect delivered twice, nor even sent twice
    payments = chaotic["tools"]
    assert payments["duplicates"]["payments"] == 0
    assert payments["requests"]["payments"] == clean["tools"]["requests"]["payments"] == 3
