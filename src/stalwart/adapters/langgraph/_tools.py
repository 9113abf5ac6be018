"""Stalwart tools as LangChain tools: every call authorized, journaled, ledgered.

:func:`langchain_tools` turns tools written with :func:`stalwart.tools.tool` into
LangChain ``StructuredTool``\\ s a graph binds to its model and hands to ``ToolNode``
unchanged. A call goes through :meth:`stalwart.agent.TaskContext.call_tool`: the
agent's scopes (a tool outside them is refused by the runtime, whatever the model
asked), the taint policy and approvals, the tool's deadline, retries and breaker, and
the journal; a side-effect tool runs through the idempotency ledger with a key
derived from the task and step, so a resumed task never repeats it. The model is
shown what the tool returned, or a structured error (denied, unavailable, unknown
outcome) it can act on.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool

from stalwart.adapters.langgraph._run import current_run, run_sync
from stalwart.tools import Tool

__all__ = ["langchain_tools"]


def _wrap(tool: Tool) -> StructuredTool:
    what = f"the tool {tool.name!r} (stalwart.adapters.langgraph.langchain_tools)"

    async def call(**arguments: Any) -> str:
        run = current_run(what)
        async with run.lock:
            result = await run.ctx.call_tool(tool.name, arguments, proposed=True)
        return result.content()

    def call_sync(**arguments: Any) -> str:
        run = current_run(what)
        text: str = run_sync(run, call(**arguments), f"{tool.name}.invoke")
        return text

    spec = tool.spec
    return StructuredTool.from_function(
        func=call_sync,
        coroutine=call,
        name=tool.name,
        description=spec.description or tool.name,
        args_schema=spec.parameters,
        infer_schema=False,
    )


def langchain_tools(*tools: Tool) -> list[StructuredTool]:
    """LangChain tools that run ``tools`` through stalwart (see the module docstring).

    Give the same stalwart tools to ``LangGraphAgent(tools=...)`` (with the scopes they
    need), so the agent process knows and authorizes them.
    """
    return [_wrap(t) for t in tools]
