"""The fault-free reference: the same tasks on a fresh node, and the comparison with it.

A task is identified by its index (its id is ``t{index:06d}``), and its input
and seed are functions of the run's seed, so re-running a set of tasks on a
fresh node and store with no fault gives what each *should* have returned.
Fields that differ between any two runs (timestamps, token usage, which model
of a chain answered: :data:`~stalwart.chaos._driver.VOLATILE`) are left out of
the comparison.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

from stalwart.chaos._driver import Driver, TaskLog, comparable
from stalwart.chaos._target import Target, TargetConfig, run_target

__all__ = ["compare_with_reference"]


async def compare_with_reference(
    tc: TargetConfig,
    inputs: Callable[[int], Any],
    log: dict[str, TaskLog],
    *,
    sample: int | None = None,
    drain: float = 120.0,
) -> dict[str, Any]:
    """Run (a seeded sample of) the tasks in ``log`` fault-free; compare the completed ones.

    Returns ``{"results_match_fault_free", "compared", "mismatches", "unknown_outcomes",
    "reference"}``: a completed task whose result is flagged ``outcome_unknown`` (a side
    effect cut off by a kill) is listed in ``unknown_outcomes``, not compared; one the
    fault-free run left unfinished (its drain ran out) in
    ``not_compared_unfinished_in_reference``, not compared either.
    """
    ids = sorted(log)
    if sample is not None and len(ids) > sample:
        ids = sorted(random.Random(tc.seed).sample(ids, sample))
    indices = [int(task_id[1:]) for task_id in ids]

    async def clean(t: Target) -> dict[str, Any]:
        driver = Driver(t.tasks, t.agent, inputs, seed=tc.seed)
        await driver.replay("reference", indices)
        await driver.drain(drain)
        return {"log": driver.log, "summary": driver.summary()}

    plain = dataclasses.replace(tc, quota_mb=None, max_pending=None)  # no fault, no shedding
    reference = await run_target(plain, clean, proxy=False)
    ref_log: dict[str, TaskLog] = reference["log"]
    mismatches: list[dict[str, Any]] = []
    unknown: list[str] = []
    unfinished: list[str] = []
    compared = 0
    for task_id in ids:
        entry = log[task_id]
        if entry.status != "succeeded":
            continue
        compared += 1
        if isinstance(entry.outcome, dict) and entry.outcome.get("outcome_unknown") is True:
            # A kill cut an at-most-once side effect mid-call: the result says it cannot
            # vouch for that effect (never repeated, never silently "done"). That is the
            # clear answer the run owes, not a different result.
            unknown.append(task_id)
            continue
        ref = ref_log.get(task_id)
        if ref is not None and ref.status == "submitted":
            # the fault-free run did not finish it within its drain (a busy machine): there
            # is nothing to compare with, which says nothing about the run under faults
            compared -= 1
            unfinished.append(task_id)
            continue
        if ref is None or ref.status != "succeeded":
            mismatches.append(
                {
                    "task_id": task_id,
                    "run": "succeeded",
                    "reference": _status(ref),
                }
            )
        elif comparable(entry.outcome, task_id) != comparable(ref.outcome, task_id):
            mismatches.append(
                {
                    "task_id": task_id,
                    "run": comparable(entry.outcome, task_id),
                    "reference": comparable(ref.outcome, task_id),
                }
            )
    return {
        "results_match_fault_free": not mismatches,
        "reference_unfinished": sum(1 for r in ref_log.values() if r.status == "submitted"),
        "not_compared_unfinished_in_reference": unfinished[:20],
        "compared": compared,
        "mismatches": mismatches[:20],
        "unknown_outcomes": unknown,
        "reference": reference["summary"],
    }


def _status(ref: TaskLog | None) -> str:
    if ref is None:
        return "missing (refused by the reference node)"
    if ref.status == "submitted":
        return "unfinished in the reference run"
    return ref.status
