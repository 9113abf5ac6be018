"""A run whose tasks all failed with no fault injected is not run, never passed."""

from __future__ import annotations

from stalwart.chaos._target import workload_failed
from stalwart.cli._chaos import render


def summary(completed: int, failed: int, failures: dict[str, int]) -> dict:
    return {"completed": completed, "failed": failed, "failures": failures}


def test_only_a_run_with_tasks_that_all_failed_tells_nothing():
    assert workload_failed(summary(1, 9, {"KeyError: 'sku'": 9}), "a", "tasks") is None
    assert workload_failed(summary(0, 0, {}), "a", "tasks") is None  # nothing ran: no claim
    why = workload_failed(summary(0, 4, {"KeyError: 'sku'": 3, "ValueError: x": 1}), "restock",
                          "soak tasks")  # fmt: skip
    assert why is not None
    assert why.startswith("all 4 soak tasks sent to agent 'restock' failed with no fault")
    assert "3 x KeyError: 'sku'; 1 x ValueError: x" in why and "--inputs" in why


def test_the_table_says_not_run_with_the_reason():
    result = {"command": "soak", "trends": {}, "passed": False, "not_run": "all 4 soak tasks"}
    text = render(result)
    assert "NOT RUN: all 4 soak tasks" in text and "FAILED" not in text
