"""`stalwart verify` on an app this project did not write: Pydantic AI's published "bank
support" example (tests/fixtures/foreign_apps/bank_support.py names its source and
licence), hosted through the Pydantic AI adapter with its agent code unchanged but for
its model, and the profile a user writes from docs/verify.md.

A short profile (the whole run is ``python bench/verify.py --app bank_support``): no item
`complete` whose evidence shows nothing exercised, no item verify could not judge for its
own error, the exit code; preflight exits 2 in seconds naming every missing piece of the
profile; the items' own kills never reach another item.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.integration.verify.exercised import internal_errors, unexercised_complete

from stalwart.verify import PreflightFailed, run_verify

from .conftest import verify_cli

pytestmark = [pytest.mark.timeout(360), pytest.mark.slow]

APP = "tests.fixtures.foreign_apps.bank_support"


def _why(items: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        k: (v["status"], v["measured"], v["evidence"].get("why"))
        for k, v in items.items()
        if v["status"] != "complete"
    }


def test_verify_on_pydantic_ai_s_bank_support_example(tmp_path):
    """The CLI, as a user runs it. PA-1's kill and EH-1's five (it restarts the model
    agent before each fault phase), then SM-2's four: more than the app's default
    intensity of 5 allows on one node, so EH-1 and SM-2 each get a fresh node first and
    no item meets a node another item's kills took down. Every verdict backed by what it
    exercised; exit 0 (no critical item failed)."""
    out = tmp_path / "readiness"
    # (70-90 s on 2 shared cores at load average 15-19; up to 3 node starts of an app
    # that imports Pydantic AI)
    done = verify_cli(
        f"{APP}:app", "--out", str(out), "--only", "PA-1,EH-1,SM-1,SM-2,GD-2", timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]  # no stray tracebacks either
    report = json.loads((out / "readiness.json").read_text())
    items = {i["id"]: i for i in report["items"]}
    assert internal_errors(items) == {}
    assert unexercised_complete(items) == {}
    assert {k: v["status"] for k, v in items.items()} == {
        "PA-1": "complete",
        "EH-1": "complete",
        "SM-1": "complete",
        "SM-2": "complete",
        "GD-2": "complete",
    }, _why(items)
    # the kills of PA-1 and EH-1 would exceed the intensity on one node: a fresh one
    eh1 = items["EH-1"]["evidence"]
    assert (
        "+ the 5 kills of EH-1 would exceed the app's restart intensity 5"
        in (eh1["fresh_node_because"])
    )
    assert eh1["503"]["attempts_of_first_call"] == eh1["policy"]["max_attempts"]
    sm2 = items["SM-2"]["evidence"]
    assert "kills of SM-2 would exceed the app's restart intensity 5" in sm2["fresh_node_because"]
    assert sm2["resumed"] >= 1 and sm2["results_equal"] and sm2["compared"] == "the output"
    assert sm2["clean_succeeded"] == sm2["tasks"]
    balance = items["GD-2"]["evidence"]["per_tool"]["customer_balance"]
    assert balance["exercised"] and balance["calls_refused_while_down"] > 0
    assert items["GD-2"]["evidence"]["agents_restarted"] == []
    assert report["meta"]["node_restarts"] == 2


@pytest.mark.parametrize(
    ("app", "pieces"),
    [
        (
            "unprofiled",
            [
                "the app declares no workload",
                "bank_support call a model with no spend limit",
                "no manifest is given",
            ],
        ),
        (
            "misprofiled",
            [
                "the workload 'tests.fixtures.foreign_apps.bank_support:question' cannot be used",
                "bank_support call a model with no spend limit",
                "no manifest is given",
                "the profile says tool 'customer_balance' runs its double, and it has none",
            ],
        ),
    ],
)
def test_preflight_on_the_foreign_app_names_every_missing_piece(tmp_path, app, pieces):
    done = verify_cli(
        f"{APP}:{app}", "--out", str(tmp_path), "--only", "PA-2,SM-2,LC-1,MA-1", timeout=120
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{len(pieces)} precondition(s)" in done.stderr, done.stderr
    for piece in pieces:
        assert piece in done.stderr, (piece, done.stderr)
    assert done.stderr.count("fix: ") == len(pieces)
    # fast because no node was started (asserted by what it did, not by a wall clock)
    assert not (tmp_path / "work").exists()


async def test_a_workload_that_fails_unfaulted_stops_verify_before_any_item(tmp_path):
    """No scenario for the simulated model: every task fails before any fault. Verify
    says so once, with the tasks' error and the fix, instead of failing SM-1 and SM-2."""
    events: list[str] = []
    with pytest.raises(PreflightFailed) as caught:
        await run_verify(
            f"{APP}:unscripted",
            tmp_path / "out",
            only=["SM-1", "SM-2", "GD-2"],
            progress=lambda event, _fields: events.append(event),
        )
    # stopped before any item, by what it did rather than by a wall-clock bound (a loaded
    # machine made the 3 workload tasks take 54 s once)
    assert "verify_item_started" not in events, events
    [problem] = caught.value.problems
    assert "all 3 workload tasks failed with no fault injected" in problem.what
    assert "UnexpectedModelBehavior" in problem.what  # the tasks' own error
    assert "App(scenario=Scenario(" in problem.fix and "output_type" in problem.fix
    assert not (tmp_path / "out" / "readiness.json").exists()  # no item was judged
