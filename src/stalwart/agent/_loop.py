"""The agent loop: model -> authorized tool calls -> results -> model, every step durable.

A task ends with one of these statuses:

- ``completed``: the model answered without asking for a tool;
- ``stopped_by_limit``: ``max_steps`` model calls were made without an answer;
- ``refused``: the runtime held or refused ``max_refusals`` tool calls the model
  proposed (an injected instruction the model keeps obeying ends here);
- ``failed`` (raised): every model of the chain failed, or the task timed out.

History is bounded before every model call (sliding window under
``history_tokens``); the largest context sent is reported as ``max_context_tokens``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stalwart.agent._context import TaskContext
from stalwart.agent._guarded import finish_output, prepare_input, refusals
from stalwart.agent._messages import assistant_message
from stalwart.agent._spec import LLMAgent
from stalwart.durable import History
from stalwart.guard import normalize_text
from stalwart.observe import start_span

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
    """Run the loop; the input is validated first and the output redacted last."""
    task_input = prepare_input(ctx, task_input, system=agent.system)
    try:
        outcome = await _loop(ctx, agent, task_input)
    finally:  # a reservation taken for a model call that did not come
        await ctx.release_ahead()
    # the output tier may run a NER model: off the loop, so heartbeats keep coming
    result: dict[str, Any] = await asyncio.to_thread(finish_output, ctx, outcome)
    return result


async def _loop(ctx: TaskContext, agent: LLMAgent, task_input: Any) -> dict[str, Any]:
    max_refusals = ctx.resources.security.taint.max_refusals
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
        # one span per step: its model call and the tool calls it asked for nest inside
        with start_span(
            f"agent_step {agent.name}",
            {"gen_ai.agent.name": agent.name, "stalwart.step": step},
        ):
            messages = await history.fit(ctx.durable)
            max_context = max(max_context, history.fitted_tokens)  # count_messages(messages)
            reply = await ctx.call_model(
                messages,
                tools=specs,
                max_tokens=agent.max_tokens,
                stream=agent.stream,
                reserve_next=step < agent.max_steps,
            )
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
                result = await ctx.call_tool(
                    call["name"], call["arguments"], proposed=True, call_id=call["id"]
                )
                # what a tool returns reaches the model without invisible (tag, zero-width) text
                content = normalize_text(result.content()).text
                history.add({"role": "tool", "tool_call_id": call["id"], "content": content})
            if refusals(ctx) >= max_refusals:
                return {
                    "status": "refused",
                    "answer": "I could not complete this request automatically; a colleague "
                    "will follow up.",
                    "steps": step,
                    "reason": f"the runtime held or refused {refusals(ctx)} tool calls",
                    "max_context_tokens": max_context,
                    "history_budget": agent.history_tokens,
                    "usage": ctx.usage.as_dict(),
                }
    return {
        "status": "stopped_by_limit",
        "answer": "",
        "steps": agent.max_steps,
        "reason": f"no answer after {agent.max_steps} model calls",
        "max_context_tokens": max_context,
        "history_budget": agent.history_tokens,
        "usage": ctx.usage.as_dict(),
    }
