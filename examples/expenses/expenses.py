"""The expenses app's code: its tools, the intake step, the workload and the sim's script.

The app itself is configuration: ``expenses.toml`` (run it with ``stalwart run
examples/expenses/expenses.toml``; verify it with ``stalwart verify
examples/expenses/expenses.toml``). An ``intake`` agent checks an expense report and
hands it to a ``reviewer`` model agent, which looks up the category's policy limit,
approves the payout (a side effect: a line in the payouts file, ``$EXPENSES_PAYOUTS``,
default ``payouts.csv``) and notifies the employee (a side effect: a line in the outbox,
``$EXPENSES_OUTBOX``, default ``outbox.txt``). Both side-effect tools have doubles, so
verification writes neither file.
"""

from __future__ import annotations

import os
import random
from typing import Any

from stalwart import TaskContext, tool
from stalwart.llm.sim import Rule, Scenario

LIMITS_CENTS = {"travel": 50_000, "meals": 8_000, "equipment": 120_000, "training": 90_000}


@tool(scopes=["policy:read"], timeout=5)
async def policy_limit(category: str) -> dict[str, Any]:
    """The most one report of ``category`` may claim, in cents."""
    return {"category": category, "limit_cents": LIMITS_CENTS.get(category, 0)}


def _append(path_env: str, default: str, line: str) -> None:
    with open(os.environ.get(path_env, default), "a") as f:
        f.write(line + "\n")


async def _payout_double(report_id: str, amount_cents: int, idempotency_key: str) -> dict[str, Any]:
    """What approve_payout answers, without writing the payouts file (verification)."""
    return {"report_id": report_id, "approved_cents": amount_cents, "payout": idempotency_key[-8:]}


@tool(scopes=["payouts:write"], timeout=10, side_effect=True, double=_payout_double)
async def approve_payout(report_id: str, amount_cents: int, idempotency_key: str) -> dict[str, Any]:
    """Approve the payout of an expense report."""
    _append("EXPENSES_PAYOUTS", "payouts.csv", f"{idempotency_key},{report_id},{amount_cents}")
    return {"report_id": report_id, "approved_cents": amount_cents, "payout": idempotency_key[-8:]}


async def _notify_double(employee: str, message: str, idempotency_key: str) -> dict[str, Any]:
    """What notify_employee answers, without writing the outbox (verification)."""
    return {"to": employee, "queued": True}


@tool(scopes=["mail:send"], timeout=10, side_effect=True, double=_notify_double)
async def notify_employee(employee: str, message: str, idempotency_key: str) -> dict[str, Any]:
    """Tell the employee what happened to their report."""
    _append("EXPENSES_OUTBOX", "outbox.txt", f"{idempotency_key}\t{employee}\t{message}")
    return {"to": employee, "queued": True}


async def intake(ctx: TaskContext, report: Any) -> dict[str, Any]:
    """Refuse malformed reports; hand the rest to the reviewer."""
    if not isinstance(report, dict) or not {"id", "employee", "category", "cents"} <= set(report):
        return {"status": "rejected", "reason": "a report needs id, employee, category, cents"}
    text = (
        f"expense report {report['id']}: {report['cents']} cents for {report['category']} "
        f"by {report['employee']}"
    )
    outcome = await ctx.hand_over("reviewer", {"text": text}, timeout=120)
    result = outcome.get("result") or {}
    answer = {
        "status": result.get("status", outcome.get("status")),
        "answer": result.get("answer", ""),
        "report": report["id"],
    }
    if result.get("outcome_unknown") is True:
        # a payout or an e-mail cut off mid-call (the reviewer was killed): it is not
        # repeated, and this report's result must not read as done either
        answer["outcome_unknown"] = True
        answer["effects"] = result.get("effects", [])
    return answer


CATEGORIES = sorted(LIMITS_CENTS)
PEOPLE = ["erin", "femi", "gita", "hugo", "ines", "jonas"]


def reports(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` expense reports (the same for the same seed): the verify workload."""
    rng = random.Random(seed)
    return [
        {
            "id": f"R-{seed}-{n:04d}",
            "employee": f"{rng.choice(PEOPLE)}@example.com",
            "category": rng.choice(CATEGORIES),
            "cents": rng.choice([1_200, 4_500, 7_900, 25_000, 60_000]),
        }
        for n in range(count)
    ]


REPORT = (
    r"expense report (?P<rid>R-[\w-]+): (?P<cents>\d+) cents for (?P<category>\w+) "
    r"by (?P<who>[\w.+-]+@[\w.-]+)"
)
SCENARIO = Scenario(
    (
        Rule(match=REPORT, call="policy_limit", arguments={"category": "{category}"}),
        Rule(
            match=REPORT,
            requires=("policy_limit",),
            call="approve_payout",
            arguments={"report_id": "{rid}", "amount_cents": "{cents}"},
            alternative="notify_employee",
            alternative_arguments={
                "employee": "{who}",
                "message": "Your report {rid} waits for a person to approve it.",
            },
        ),
        Rule(
            match=REPORT,
            requires=("policy_limit", "approve_payout"),
            call="notify_employee",
            arguments={"employee": "{who}", "message": "Report {rid}: {cents} cents approved."},
        ),
        Rule(
            match=REPORT,
            requires=("policy_limit", "approve_payout", "notify_employee"),
            answer="Report {rid} approved ({cents} cents); {who} was told.",
        ),
    )
)
