"""A LangGraph app whose graph asks a person before it refunds (``interrupt()``)."""

from __future__ import annotations

from typing import Any

from examples.langgraph_support.graph import refund
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import interrupt

from stalwart.adapters.langgraph import LangGraphAgent
from stalwart.agent import App


def confirm(state: MessagesState) -> dict[str, Any]:
    decision = interrupt({"question": "refund 900 cents on order 77?"})
    word = "approved" if decision["approved"] else "denied"
    return {"messages": [{"role": "assistant", "content": f"refund {word} by {decision['by']}"}]}


builder = StateGraph(MessagesState)
builder.add_node("confirm", confirm)
builder.add_edge(START, "confirm")

# the side-effect tool gives the agent its approval queue (what interrupt() waits in)
app = App(
    agents=[LangGraphAgent(name="hitl", graph=builder, tools=[refund], scopes=["payments:write"])]
)
