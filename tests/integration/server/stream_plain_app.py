"""An app that is not the helpdesk: a plain-Python agent that asks its model twice, with
``ctx.call_model(stream=True)``, on the default simulated provider (no scenario)."""

from __future__ import annotations

from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext


async def brief(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    """Two model calls in a row, each streamed; the second builds on the first."""
    first = await ctx.call_model(
        [{"role": "user", "content": f"Summarize: {task_input['text']}"}], stream=True
    )
    second = await ctx.call_model(
        [
            {"role": "user", "content": f"Summarize: {task_input['text']}"},
            {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": "Now say it in one line for a status page."},
        ],
        stream=True,
    )
    return {"summary": first["content"], "status_line": second["content"]}


app = App(
    agents=[PythonAgent(name="briefer", fn=brief, model="main")],
    models={"main": ["sim:strong", "sim:weak"]},
    sim=True,
)
