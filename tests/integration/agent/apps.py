"""Small apps for the process-level agent tests (imported by agent processes)."""

from __future__ import annotations

import asyncio
from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext
from stalwart.errors import StepFailed


async def caller(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    try:
        reply = await ctx.call_agent(
            task_input["target"],
            {"task_id": f"{ctx.task_id}.sub", "input": {}},
            timeout=task_input["timeout"],
        )
    except StepFailed as exc:
        return {"status": "completed", "callee_failed": str(exc)}
    return {"status": "completed", "reply": reply}


async def slow(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    await asyncio.sleep(30)
    return {"status": "completed"}


calls = App(
    agents=[
        PythonAgent(name="caller", fn=caller, agents=("slow", "gone")),
        PythonAgent(name="slow", fn=slow),
        PythonAgent(name="gone", fn=slow, restart="temporary"),
    ],
    lease_seconds=5,
)
