"""LangGraph graphs hosted by stalwart. See docs/adapters/langgraph.md."""

from stalwart.adapters.langgraph._saver import StalwartSaver

__all__ = ["StalwartSaver"]
