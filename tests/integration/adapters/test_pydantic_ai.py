"""The Pydantic AI support example on a real node, its agent process SIGKILLed mid-run."""

from __future__ import annotations

from typing import Any

import pytest
from examples.pydantic_ai_support.app import tickets
from tests.integration.adapters._support_run import run_support


def same_results(results: dict[str, Any]) -> dict[str, Any]:
    """What must not change across kills: status, output, and the calls made."""
    counted = ("model_calls", "tool_calls", "denied_tool_calls", "held_tool_calls")
    return {
        task: (r["status"], r["output"], {k: r["usage"][k] for k in counted})
        for task, r in results.items()
    }


@pytest.mark.timeout(120)
async def test_sigkilled_pydantic_ai_agent_resumes_with_the_same_results_and_no_rerun(tmp_path):
    work = tickets(10, seed=3)
    refunds = sum("refund" in t["text"] for t in work)
    assert refunds >= 2  # the workload exercises the side-effect tool
    clean = await run_support(tmp_path / "clean.db", work)
    assert clean.kills == 0 and clean.duplicates == 0
    assert len(clean.deliveries) == refunds  # one refund delivered per refund ticket

    # kills before model requests 2, 5, 9 and 14, and inside the first and third refund
    chaos = await run_support(
        tmp_path / "chaos.db", work, kill_at_model={2, 5, 9, 14}, kill_at_refund={1, 3}
    )
    assert chaos.kills == 6 and chaos.model_kills == 4
    # every task: the same result (a refund cut off after delivery is re-sent with its
    # key, and the payment service answers with the first refund, unchanged).
    assert same_results(chaos.results) == same_results(clean.results)
    # every recorded model call came from the journal: the only requests beyond the
    # uninterrupted run's are the ones each kill left unanswered
    assert chaos.model_requests - clean.model_requests - chaos.model_kills == 0
    assert chaos.duplicates == 0  # no refund delivered twice
    assert chaos.deliveries.keys() == clean.deliveries.keys()  # same refunds, same keys
    # the two refunds cut off after delivery were re-sent with their key (exactly once)
    assert chaos.payment_requests == clean.payment_requests + 2
    outputs = [r["output"] for r in chaos.results.values()]
    assert sum(o["refunded_cents"] > 0 for o in outputs) == refunds
