"""LangGraph graphs hosted by stalwart (DESIGN.md layer 4½). See docs/adapters/langgraph.md.

What a user changes in a LangGraph app::

    from stalwart.adapters.langgraph import ChatModel, LangGraphAgent, langchain_tools

    tools = langchain_tools(lookup_order, refund)      # stalwart @tool functions
    model = ChatModel().bind_tools(tools)              # instead of ChatOpenAI(...)
    # ... the StateGraph, its nodes, ToolNode(tools), edges: unchanged ...
    agent = LangGraphAgent(name="support", graph=builder, model="support",
                           tools=[lookup_order, refund], scopes=[...])
"""

from stalwart.adapters.langgraph._agent import INTERRUPT_TOOL, LangGraphAgent, default_resume
from stalwart.adapters.langgraph._model import ChatModel
from stalwart.adapters.langgraph._saver import StalwartSaver
from stalwart.adapters.langgraph._tools import langchain_tools

__all__ = [
    "INTERRUPT_TOOL",
    "ChatModel",
    "LangGraphAgent",
    "StalwartSaver",
    "default_resume",
    "langchain_tools",
]
