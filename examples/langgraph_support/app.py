"""The LangGraph support agent as an app; `stalwart run examples.langgraph_support.app:app`.

``graph.py`` is the LangGraph code; this file declares it to stalwart
(``LangGraphAgent``), with its model chain on the simulated models, the scopes its
tools need, and the verification profile (``stalwart verify
examples.langgraph_support.app:app``).
"""

from __future__ import annotations

import random
from typing import Any

from examples.langgraph_support.graph import builder, lookup_order, refund
from stalwart.adapters.langgraph import LangGraphAgent
from stalwart.agent import App, VerifyProfile
from stalwart.guard import ArgRule, Budget, Security, TaintPolicy, ToolRule
from stalwart.llm import Provider
from stalwart.llm.sim import Rule, Scenario

AUTO_REFUND_LIMIT_CENTS = 5000
"""Refunds above this wait for a person (stalwart's approval queue)."""

SUPPORT = LangGraphAgent(
    name="support",
    graph=builder,
    model="support",
    tools=[lookup_order, refund],
    scopes=["orders:read", "payments:write"],
    max_tasks=16,
    security=Security(
        budget=Budget(task_usd=0.25, agent_usd=500.0, day_usd=1000.0),
        # the model may be talked into anything: a refund runs only for an order looked up
        # in the order database, and above the limit it waits for a person
        taint=TaintPolicy(
            record_tools=("lookup_order",),
            tools={
                "refund": ToolRule(
                    args={
                        "order_id": ArgRule.of("record"),
                        "amount_cents": ArgRule.of("user", max_value=AUTO_REFUND_LIMIT_CENTS),
                    }
                )
            },
        ),
    ),
)

TICKET = r"refund (?P<cents>\d+) cents on order (?P<oid>\d+)"
SCENARIO = Scenario(
    (
        Rule(match=TICKET, call="lookup_order", arguments={"order_id": "{oid}"}),
        Rule(
            match=TICKET,
            requires=("lookup_order",),
            call="refund",
            arguments={"order_id": "{oid}", "amount_cents": "{cents}"},
        ),
        Rule(
            match=TICKET,
            requires=("lookup_order", "refund"),
            answer="Refunded {cents} cents on order {oid}.",
        ),
    )
)


def tickets(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` support requests (the same for the same seed): the verify workload."""
    rng = random.Random(seed)
    return [
        {
            "messages": [
                {
                    "role": "user",
                    "content": f"Please refund {rng.choice([500, 1200, 2500])} cents on order "
                    f"{rng.randint(1000, 9999)}.",
                }
            ],
            "thread_id": f"customer-{seed}-{n}",
        }
        for n in range(count)
    ]


app = App(
    agents=[SUPPORT],
    models={"support": ["sim:strong", "sim:weak"]},
    providers={"sim": Provider("http://set-by-the-node", api_key="secret://sim-api-key")},
    store="sqlite:///langgraph_support.db",
    sim=True,
    scenario=SCENARIO,
    intensity=50,
    period=60,
    verify=VerifyProfile(
        workload="examples.langgraph_support.app:tickets",
        tools={"lookup_order": "sim:orders", "refund": "sim:payments"},
        manifest="deploy/kubernetes/deployment.yaml",
    ),
)
