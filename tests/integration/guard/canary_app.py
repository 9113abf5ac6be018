"""An app that handles canary PII and credentials everywhere (for the canary test)."""

from __future__ import annotations

from typing import Any

from stalwart.agent import App, LLMAgent, PythonAgent, TaskContext
from stalwart.agent._setup import secret_resolver
from stalwart.llm import Provider
from stalwart.llm.sim import Rule, Scenario
from stalwart.observe import get_logger
from stalwart.tools import tool

EMAIL = "canary.zq81@example.com"
CARD = "4539 1488 0343 6467"
PHONE = "+44 20 7946 0958"
SSN = "219-09-9999"
AWS = "AKIACANARY7Q2W3E4R5T"
GITHUB = "ghp_CanaryCanaryCanaryCanaryCanary123456"
SECRET = "canary-secret-Vn3kP9xQ"
"""The model API key in the vault: nothing pattern-like, caught as a known value."""
CANARIES = (EMAIL, CARD, CARD.replace(" ", ""), PHONE, SSN, AWS, GITHUB, SECRET)

_log = get_logger("canary.app")


@tool(scopes=["orders:read"], timeout=5)
async def lookup_order(order_id: int) -> dict[str, Any]:
    """An order, with the customer's details in it."""
    _log.info("order_looked_up", order_id=order_id, customer=EMAIL, card=CARD)
    return {"order_id": order_id, "email": EMAIL, "card": CARD, "notes": f"aws={AWS} {GITHUB}"}


@tool(scopes=["orders:read"], timeout=5)
async def billing(order_id: int) -> dict[str, Any]:
    """Fails, naming the customer."""
    raise ValueError(f"billing failed for {EMAIL} card {CARD} phone {PHONE}")


SCENARIO = Scenario(
    (
        Rule(match=r"order #(?P<order_id>\d+)", call="lookup_order",
             arguments={"order_id": "{order_id}"}),
        Rule(match=r"order #(?P<order_id>\d+)", requires=("lookup_order",), call="billing",
             arguments={"order_id": "{order_id}"}),
        Rule(match=r"order #(?P<order_id>\d+)", requires=("lookup_order", "billing"),
             answer="Order {order_id}: {result:lookup_order} / {result:billing}"),
    )
)  # fmt: skip


async def careless(ctx: TaskContext, task_input: Any) -> Any:
    """Logs what it should not, then fails with PII in the error."""
    key = secret_resolver().resolve("secret://model-key")
    _log.info("careless_debug", key=key, input=task_input, token=GITHUB)
    await ctx.step("note", lambda: {"customer": EMAIL})
    raise RuntimeError(f"cannot bill {CARD} for {EMAIL}; key {key}; ssn {SSN}")


app = App(
    agents=[
        LLMAgent(
            name="desk",
            model="main",
            tools=[lookup_order, billing],
            scopes=["orders:read"],
            max_steps=6,
        ),
        PythonAgent(name="careless", fn=careless, restart="transient"),
    ],
    models={"main": ["sim:strong"]},
    providers={"sim": Provider("http://replaced-by-the-node", api_key="secret://model-key")},
    sim=True,
    scenario=SCENARIO,
)
