"""A LangGraph support agent, written as LangGraph's docs write one.

A model node and a ``ToolNode`` in a loop (``tools_condition`` routes between them),
one read tool (``lookup_order``) and one side-effect tool (``refund``). The only
stalwart lines: the tools are stalwart ``@tool`` functions handed to LangChain by
``langchain_tools``, and the chat model is ``ChatModel()`` instead of ``ChatOpenAI``.
The graph code is LangGraph's API, unchanged. ``app.py`` declares it to stalwart.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from stalwart import http_client
from stalwart.adapters.langgraph import ChatModel, langchain_tools
from stalwart.llm.sim import service_url
from stalwart.tools import tool

SYSTEM = "You are a support agent. Look the order up before you refund anything."


@tool(scopes=["orders:read"], timeout=10)
async def lookup_order(order_id: int) -> dict[str, Any]:
    """Look up an order: its status, amount, items and customer."""
    r = await http_client().get(service_url(f"/tools/orders/{order_id}"), timeout=10)
    r.raise_for_status()
    return dict(r.json())


@tool(scopes=["payments:write"], timeout=15, side_effect=True, deduplicates=True)
async def refund(order_id: int, amount_cents: int, idempotency_key: str) -> dict[str, Any]:
    """Refund part or all of an order (the payment service dedupes on the key)."""
    r = await http_client().post(
        service_url("/tools/payments/refund"),
        json={"order_id": order_id, "amount_cents": amount_cents},
        headers={"Idempotency-Key": idempotency_key},
        timeout=15,
    )
    r.raise_for_status()
    return dict(r.json())


# --- from here on, LangGraph as its docs show it ---------------------------------------
tools = langchain_tools(lookup_order, refund)
model = ChatModel().bind_tools(tools)


def call_model(state: MessagesState) -> dict[str, Any]:
    response = model.invoke([{"role": "system", "content": SYSTEM}, *state["messages"]])
    return {"messages": [response]}


builder = StateGraph(MessagesState)
builder.add_node("agent", call_model)
builder.add_node("tools", ToolNode(tools))
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", tools_condition)
builder.add_edge("tools", "agent")
