"""A customer-support agent written with the OpenAI Agents SDK, as its docs show it.

Nothing here knows stalwart: plain ``agents.Agent`` and ``@function_tool``. One
read tool (``lookup_order``) and one side-effect tool (``refund_order``: it moves
money, so the payment service is given an idempotency key, the SDK's tool call id).
``app.py`` declares this agent to stalwart in a few lines.
"""

from __future__ import annotations

from typing import Any

from agents import Agent, function_tool
from agents.tool_context import ToolContext

from stalwart import http_client
from stalwart.llm.sim import service_url


@function_tool
async def lookup_order(order_id: int) -> dict[str, Any]:
    """Look up an order: its status, amount in cents, items and customer.

    Args:
        order_id: The order's number.
    """
    r = await http_client().get(service_url(f"/tools/orders/{order_id}"), timeout=10)
    r.raise_for_status()
    return dict(r.json())


@function_tool
async def refund_order(ctx: ToolContext[Any], order_id: int, amount_cents: int) -> dict[str, Any]:
    """Refund part or all of an order to the customer's payment method.

    Args:
        order_id: The order's number.
        amount_cents: How much to refund, in cents.
    """
    # the payment service keeps the first refund per key: the tool call's id is the key
    r = await http_client().post(
        service_url("/tools/payments/refund"),
        json={"order_id": order_id, "amount_cents": amount_cents},
        headers={"Idempotency-Key": ctx.tool_call_id},
        timeout=10,
    )
    r.raise_for_status()
    return dict(r.json())


support_agent = Agent(
    name="Support",
    instructions=(
        "You are a customer support agent. Look orders up before you answer; refund an "
        "order when the customer asks for it and the amount is within the order's total; "
        "answer briefly."
    ),
    tools=[lookup_order, refund_order],
)
