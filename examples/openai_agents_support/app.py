"""The support agent of ``agent.py`` (OpenAI Agents SDK code, unchanged), run by stalwart.

The lines a user adds are the ``OpenAIAgentsAgent`` declaration and the ``App``:
which model chain the agent's model calls use, and per tool its scopes and whether
it has side effects. Run it with the simulated models and services::

    stalwart run examples.openai_agents_support.app:app
    stalwart task submit support '{"text": "Please refund 1200 cents for order #42"}'

Every model call goes through the ``main`` chain (the simulated strong model, then
the weak one); ``lookup_order`` is a journaled step; ``refund_order`` runs at most
once per call through the idempotency ledger (the payment service also dedupes on
the key it is given). ``stalwart verify examples.openai_agents_support.app:app``
drives it with ``tickets`` and faults its tools by the profile.
"""

from __future__ import annotations

import random
from typing import Any

from examples.openai_agents_support.agent import support_agent
from stalwart.adapters.openai_agents import OpenAIAgentsAgent, ToolPolicy
from stalwart.agent import App, VerifyProfile
from stalwart.guard import ArgRule, Budget, Security, TaintPolicy, ToolRule
from stalwart.llm import Provider
from stalwart.llm.sim import Rule, Scenario

AUTO_REFUND_LIMIT_CENTS = 5000
"""Refunds above this wait for a person (stalwart's approval queue)."""

SUPPORT = OpenAIAgentsAgent(
    name="support",
    agent=support_agent,
    model="main",
    tool_policies={
        "lookup_order": ToolPolicy(scopes=["orders:read"], timeout=10),
        "refund_order": ToolPolicy(
            scopes=["payments:write"], side_effect=True, deduplicates=True, timeout=15
        ),
    },
    # model spend caps (the sim is priced like gpt-4o); a ticket costs about $0.001-0.002
    security=Security(
        budget=Budget(task_usd=0.25, agent_usd=500.0, day_usd=1000.0),
        # the model may be talked into anything: a refund runs only for an order looked up
        # in the order database, and above the limit it waits for a person
        taint=TaintPolicy(
            record_tools=("lookup_order",),
            tools={
                "refund_order": ToolRule(
                    args={
                        "order_id": ArgRule.of("record"),
                        "amount_cents": ArgRule.of("user", max_value=AUTO_REFUND_LIMIT_CENTS),
                    }
                )
            },
        ),
    ),
    max_tasks=8,
)

# -- what the simulated model does with a ticket (a real model needs none of this) ----------

ORDER = r"order #(?P<order_id>\d+)"
REFUND = r"refund (?:of )?(?P<amount>\d+) cents for order #(?P<order_id>\d+)"
SCENARIO = Scenario(
    (
        Rule(match=REFUND, call="lookup_order", arguments={"order_id": "{order_id}"}),
        Rule(
            match=REFUND,
            requires=("lookup_order",),
            call="refund_order",
            arguments={"order_id": "{order_id}", "amount_cents": "{amount}"},
        ),
        Rule(
            match=REFUND,
            requires=("lookup_order", "refund_order"),
            answer="Refunded {amount} cents for order #{order_id}.",
        ),
        Rule(match=ORDER, call="lookup_order", arguments={"order_id": "{order_id}"}),
        Rule(
            match=ORDER,
            requires=("lookup_order",),
            answer="Order #{order_id}: {result:lookup_order}",
        ),
    )
)


def tickets(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` support tickets (the same for the same seed): a third ask for a refund."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for n in range(count):
        order = rng.randint(1, 9999)
        if n % 3 == 0:
            text = f"Please refund {rng.randint(100, 900)} cents for order #{order}, it broke."
        else:
            text = f"Where is my order #{order}?"
        out.append({"id": f"t-{seed}-{n}", "text": text})
    return out


app = App(
    agents=[SUPPORT],
    models={"main": ["sim:strong", "sim:weak"]},
    # the node puts the sim's address here; the key is a reference, resolved per request
    # (the node creates it in the local vault when it is missing), never a value
    providers={"sim": Provider("http://set-by-the-node", api_key="secret://sim-api-key")},
    store="sqlite:///openai-agents-support.db",
    sim=True,
    scenario=SCENARIO,
    intensity=20,  # restarts the supervisor absorbs in `period` s (chaos kills included)
    period=60,
    verify=VerifyProfile(
        workload="examples.openai_agents_support.app:tickets",
        tools={"lookup_order": "sim:orders", "refund_order": "sim:payments"},
        # MA-1 reads the probes from it (relative to where verify runs: the repository)
        manifest="deploy/kubernetes/deployment.yaml",
    ),
)
