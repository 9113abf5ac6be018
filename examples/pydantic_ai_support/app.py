"""A Pydantic AI support agent hosted by stalwart.

``support_agent`` below is plain Pydantic AI, written as its docs write a support
agent: dependencies, dynamic instructions, a structured output type, a read tool
(``lookup_order``) and a side-effect tool (``refund``). Nothing in it imports stalwart
except ``idempotency_key(ctx)``, which the refund passes to the payment service so a
resumed task cannot refund twice.

The stalwart part is the ``PydanticAIAgent`` declaration at the bottom: which model
chain its requests go through, what each tool may touch, and the taint policy. Run::

    stalwart run examples.pydantic_ai_support.app:app

It starts the simulated models and services itself (``sim=True``); the scenario makes
the simulated model behave as a real one would on these tickets.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from pydantic import BaseModel, Field
from pydantic_ai import Agent, RunContext

from stalwart import http_client
from stalwart.adapters.pydantic_ai import PydanticAIAgent, ToolPolicy, idempotency_key
from stalwart.agent import App, VerifyProfile
from stalwart.guard import ArgRule, Budget, Security, TaintPolicy, ToolRule
from stalwart.llm import Provider
from stalwart.llm.sim import Rule, Scenario, service_url

# -- the Pydantic AI agent, as its docs would have it ----------------------------------------


@dataclasses.dataclass
class SupportDeps:
    customer: str


class SupportOutput(BaseModel):
    answer: str = Field(description="Advice returned to the customer")
    refunded_cents: int = Field(description="Cents refunded in this conversation", ge=0)
    risk: int = Field(description="Risk level of the query", ge=0, le=10)


support_agent = Agent(
    deps_type=SupportDeps,
    output_type=SupportOutput,
    instructions=(
        "You are a support agent for an online shop. Look orders up before you act, "
        "refund them when the customer asks, and judge the risk of the query."
    ),
)


@support_agent.instructions
def customer_name(ctx: RunContext[SupportDeps]) -> str:
    return f"The customer is {ctx.deps.customer}."


@support_agent.tool
async def lookup_order(ctx: RunContext[SupportDeps], order_id: int) -> dict[str, Any]:
    """Look up an order: its status, amount and items."""
    r = await http_client().get(service_url(f"/tools/orders/{order_id}"), timeout=10)
    r.raise_for_status()
    return dict(r.json())


@support_agent.tool
async def refund(ctx: RunContext[SupportDeps], order_id: int, amount_cents: int) -> dict[str, Any]:
    """Refund part or all of an order."""
    r = await http_client().post(
        service_url("/tools/payments/refund"),
        json={"order_id": order_id, "amount_cents": amount_cents},
        headers={"Idempotency-Key": idempotency_key(ctx)},  # the payment service dedupes on it
        timeout=10,
    )
    r.raise_for_status()
    return dict(r.json())


# -- what the simulated model does with a ticket --------------------------------------------

ORDER = r"order #(?P<order_id>\d+)"
REFUND = ORDER + r".*?refund of (?P<amount>\d+) cents"
SCENARIO = Scenario(
    (
        Rule(match=REFUND, call="lookup_order", arguments={"order_id": "{order_id}"}),
        Rule(
            match=REFUND,
            requires=("lookup_order",),
            call="refund",
            arguments={"order_id": "{order_id}", "amount_cents": "{amount}"},
        ),
        Rule(
            match=REFUND,
            requires=("lookup_order", "refund"),
            call="final_result",
            arguments={
                "answer": "Refunded {amount} cents for order #{order_id}.",
                "refunded_cents": "{amount}",
                "risk": 2,
            },
        ),
        Rule(match=ORDER, call="lookup_order", arguments={"order_id": "{order_id}"}),
        Rule(
            match=ORDER,
            requires=("lookup_order",),
            call="final_result",
            arguments={"answer": "Order #{order_id} is on its way.", "refunded_cents": 0, "risk": 0},
        ),
        # anything else: a structured answer that quotes the ticket (no tool)
        Rule(
            match=r"(?P<ticket>.+)",
            call="final_result",
            arguments={
                "answer": "Thanks, a colleague will follow up on: {ticket}",
                "refunded_cents": 0,
                "risk": 5,
            },
        ),
    )
)

# -- stalwart: the model chain, what each tool may touch, the taint policy -------------------

AUTO_REFUND_LIMIT_CENTS = 5000
"""Refunds above this wait for a person (stalwart's approval queue)."""

SUPPORT = PydanticAIAgent(
    name="support",
    agent=support_agent,
    model="main",
    policies={
        "lookup_order": ToolPolicy(scopes=["orders:read"], timeout=10),
        "refund": ToolPolicy(
            scopes=["payments:write"], side_effect=True, deduplicates=True, timeout=15
        ),
    },
    scopes=["orders:read", "payments:write"],
    deps=lambda task: SupportDeps(customer=str(task.get("from", "a customer"))),
    max_tasks=8,
    security=Security(
        # a ticket costs about $0.001 on the sim's prices; a call reserves its worst case first
        budget=Budget(task_usd=0.25, agent_usd=1500.0, day_usd=3000.0),
        taint=TaintPolicy(
            principal_fields=("from",),
            record_tools=("lookup_order",),
            tools={
                "refund": ToolRule(
                    args={
                        # only an order looked up in the order database (a number the
                        # model read in the ticket alone could be an injected one)
                        "order_id": ArgRule.of("record"),
                        "amount_cents": ArgRule.of("user", max_value=AUTO_REFUND_LIMIT_CENTS),
                    }
                )
            },
        )
    ),
)


def tickets(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` support tickets (the same for the same seed): the verify workload."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for n in range(count):
        order = rng.randint(1000, 9999)
        if rng.random() < 0.5:
            text = f"Hi, about order #{order}: please make a refund of {rng.randint(1, 49) * 100} cents."
        else:
            text = f"Where is my order #{order}?"
        out.append({"id": f"t{seed}-{n}", "text": text, "from": f"customer{n}@example.com"})
    return out


app = App(
    agents=[SUPPORT],
    models={"main": ["sim:strong", "sim:weak"]},
    # the node puts the sim's address here; the key is a reference, resolved per request
    providers={"sim": Provider("http://set-by-the-node", api_key="secret://sim-api-key")},
    store="sqlite:///pydantic-ai-support.db",
    sim=True,
    scenario=SCENARIO,
    intensity=50,
    period=60,
    verify=VerifyProfile(
        workload="examples.pydantic_ai_support.app:tickets",
        tools={"lookup_order": "sim:orders", "refund": "sim:payments"},
        manifest="deploy/kubernetes/deployment.yaml",  # MA-1 reads the probes from it
    ),
)
