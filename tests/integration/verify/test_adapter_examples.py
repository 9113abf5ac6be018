"""`stalwart verify` on a framework adapter's example: the LangGraph support agent (a
LangGraph graph hosted by ``LangGraphAgent``), a short profile (the full run is
``python bench/verify.py --app langgraph``).

What must hold on an app whose loop stalwart did not write: every item that says
`complete` shows what it measured, no item is verify's own error, and the item whose
probe cannot reach the framework's loop (SM-3: stalwart's own history window) says
`not-run` and why, instead of `complete`."""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.verify import run_verify

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow]

ITEMS = ["PA-3", "SM-1", "SM-2", "SM-3", "SM-4", "GD-2"]


def _why(items: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        k: (v["status"], v["measured"], v["evidence"].get("why"), str(v["evidence"])[-1500:])
        for k, v in items.items()
        if v["status"] != "complete"
    }


async def test_langgraph_example_short_profile(tmp_path):
    report = await run_verify("examples.langgraph_support.app:app", tmp_path / "out", only=ITEMS)
    items = {i["id"]: i for i in report["items"]}
    assert set(items) == set(ITEMS)
    for item in items.values():  # verify's own errors would be not-run with a traceback
        assert "traceback" not in item["evidence"], (item["id"], item["evidence"]["traceback"])
    for item in items.values():  # no complete without its evidence
        if item["status"] == "complete":
            assert item["evidence"] and item["measured"], item
    assert {k: v["status"] for k, v in items.items()} == {
        "PA-3": "complete",
        "SM-1": "complete",
        "SM-2": "complete",
        # LangGraph's MessagesState is the context; verify's probe is stalwart's own loop
        "SM-3": "not-run",
        "SM-4": "complete",
        "GD-2": "complete",
    }, _why(items)
    sm3 = items["SM-3"]["evidence"]
    assert sm3["agents_building_their_own_context"] == ["support"], sm3
    assert "build the context they send themselves" in sm3["why"]
    assert items["SM-3"]["measured"] == "not exercised: support build their own model context"
    sm2 = items["SM-2"]["evidence"]
    assert sm2["resumed"] >= 1 and sm2["results_equal"], sm2
    assert items["SM-1"]["evidence"]["records"] >= 5  # model and tool calls, each a record
    effects = items["SM-4"]["evidence"]["per_tool"]
    assert effects["refund"]["keys_delivered"] > 0 and effects["refund"]["duplicates"] == 0
    assert all(t["exercised"] for t in items["GD-2"]["evidence"]["per_tool"].values())
    assert report["summary"]["critical_failed"] == []
