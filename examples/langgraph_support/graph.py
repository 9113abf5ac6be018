"""A LangGraph support agent, written as LangGraph's docs write one.

A model node and a ``ToolNode`` in a loop (``tools_condition`` routes between them),
one read tool (``lookup_order``) and one side-effect tool (``refund``). The only
stalwart lines: the tools are stalwart ``@tool`` functions handed to LangChain by
``langchain_tools``, and the chat model is ``ChatModel()`` instead of ``ChatOpenAI``.
The graph code is LangGraph's API, unchanged. ``app.py`` declares it to stalwart.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from stalwart.adapters.langgraph import ChatModel, langchain_tools
from stalwart.llm.sim import service_url
from stalwart.tools import tool

SYSTEM = "You are a support agent. Look the order up before you refund anything."


_clients: dict[tuple[int, int], httpx.AsyncClient] = {}


def http() -> httpx.AsyncClient:
    """One HTTP client per process and event loop, as httpx advises: building one loads
    the CA bundle (~30 ms of the event loop each), which a client per tool call paid
    every call -- under load, enough to push the tools past their deadlines."""
    key = (os.getpid(), id(asyncio.get_running_loop()))
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = httpx.AsyncClient(timeout=15)
    return client


@tool(scopes=["orders:read"], timeout=10)
async def lookup_order(order_id: int) -> dict[str, Any]:
    """Look up an order: its status, amount, items and customer."""
    r = await http().get(service_url(f"/tools/orders/{order_id}"), timeout=10)
    r.raise_for_status()
    return dict(r.json())


@tool(scopes=["payments:write"], timeout=15, side_effect=True, deduplicates=True)
async def refund(order_id: int, amount_cents: int, idempotency_key: str) -> dict[str, Any]:
    """Refund part or all of an order (the payment service dedupes on the key)."""
    r = await http().post(
        service_url("/tools/payments/refund"),
        json={"order_id": order_id, "amount_cents": amount_cents},
        headers={"Idempotency-Key": idempotency_key},
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
