"""The agent loop: model -> authorized tool calls -> results -> model, every step durable.

A task ends with one of these statuses:

- ``completed``: the model answered without asking for a tool;
- ``stopped_by_limit``: ``max_steps`` model calls were made without an answer;
- ``failed`` (raised): every model of the chain failed, or the task timed out.

History is bounded before every model call (sliding window under
``history_tokens``); the largest context sent is reported as ``max_context_tokens``.
"""

from __future__ import annotations

from typing import Any

from stalwart.agent._context import TaskContext, assistant_message
from stalwart.agent._spec import LLMAgent
from stalwart.durable import History, count_messages

__all__ = ["run_llm_agent"]


def _user_text(task_input: Any) -> str:
    if isinstance(task_input, str):
        return task_input
    if isinstance(task_input, dict):
        for key in ("text", "message", "ticket", "question", "input"):
            if isinstance(task_input.get(key), str):
                return str(task_input[key])
    import json

    return json.dumps(task_input)


async def run_llm_agent(ctx: TaskContext, agent: LLMAgent, task_input: Any) -> dict[str, Any]:
    history = History(
        agent.history_tokens,
        messages=[
            {"role": "system", "content": agent.system},
            {"role": "user", "content": _user_text(task_input)},
        ],
    )
    specs = ctx.tool_specs()
    max_context = 0
    for step in range(1, agent.max_steps + 1):
        messages = await history.fit(ctx.durable)
        max_context = max(max_context, count_messages(messages, history.counter))
        reply = await ctx.call_model(messages, tools=specs, max_tokens=agent.max_tokens)
        history.add(assistant_message(reply))
        if not reply["tool_calls"]:
            return {
                "status": "completed",
                "answer": reply["content"],
                "steps": step,
                "model": reply["model"],
                "max_context_tokens": max_context,
                "history_budget": agent.history_tokens,
                "usage": ctx.usage.as_dict(),
            }
        for call in reply["tool_calls"]:
            result = await ctx.call_tool(call["name"], call["arguments"])
            history.add({"role": "tool", "tool_call_id": call["id"], "content": result.content()})
    return {
        "status": "stopped_by_limit",
        "answer": "",
        "steps": agent.max_steps,
        "reason": f"no answer after {agent.max_steps} model calls",
        "max_context_tokens": max_context,
        "history_budget": agent.history_tokens,
        "usage": ctx.usage.as_dict(),
    }
