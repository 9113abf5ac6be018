"""Tools: ``@tool``, the registry, scopes, deadlines, breakers. See docs/tools.md."""

from stalwart.tools._registry import ToolRegistry
from stalwart.tools._tool import Tool, ToolResult, ToolStatus, tool

__all__ = ["Tool", "ToolRegistry", "ToolResult", "ToolStatus", "tool"]
