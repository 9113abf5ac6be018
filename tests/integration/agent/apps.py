"""Small apps for the process-level agent tests (imported by agent processes)."""

from __future__ import annotations

import asyncio
from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext
from stalwart.errors import StepFailed


async def caller(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    # ``call_s``: how long the call itself took, on the journaled clock (a resumed task
    # replays the same times). The task around it takes longer: its first output loads
    # the output redactor's model, seconds of CPU on a busy machine.
    started = await ctx.now()
    try:
        reply = await ctx.call_agent(
            task_input["target"],
            {"task_id": f"{ctx.task_id}.sub", "input": {}},
            timeout=task_input["timeout"],
        )
    except StepFailed as exc:
        took = await ctx.now() - started
        return {"status": "completed", "callee_failed": str(exc), "call_s": took}
    return {"status": "completed", "reply": reply, "call_s": await ctx.now() - started}


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


# -- hand-overs that hold no worker: `fanout` -----------------------------------------------
# Every `back` task waits at a barrier until HANDOVER_BARRIER of them are in flight at once.
# A hand-over that waited inside a call held one of the callee's 64 call workers, so the
# 65th sub-task was never even created and the barrier could not open (its wait ends at
# 60 s with released=False); hand-overs that wait on a notice open it at once.
HANDOVER_BARRIER = 100
_arrived = [0]
_open = asyncio.Event()


async def front(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    outcome = await ctx.hand_over("back", task_input, timeout=120)
    return {"status": "completed", "back": outcome}


async def back(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    # tasks claimed in one store transaction share their claim's time (updated_at)
    claimed_at = ctx.durable.lease.task.updated_at

    async def barrier() -> dict[str, Any]:
        _arrived[0] += 1
        if _arrived[0] >= HANDOVER_BARRIER:
            _open.set()
        try:
            async with asyncio.timeout(60):
                await _open.wait()
        except TimeoutError:
            return {"released": False, "arrived": _arrived[0]}
        return {"released": True, "arrived": _arrived[0]}

    return {"status": "completed", "claimed_at": claimed_at, **(await ctx.step("barrier", barrier))}


fanout = App(
    agents=[
        PythonAgent(name="front", fn=front, agents=("back",)),
        PythonAgent(name="back", fn=back),
    ],
    lease_seconds=10,
)


# -- a task whose own code times out: `impatient` ------------------------------------------
# Its code's TimeoutError (asyncio's, around an operation of its own) is what the task fails
# with; only its own task_timeout (600 s) expiring is "ran past its task_timeout".


async def impatient(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    async with asyncio.timeout(0.3):  # an operation of its own that gives up
        await asyncio.sleep(30)
    return {"status": "completed"}


own_timeout = App(
    agents=[PythonAgent(name="impatient", fn=impatient, task_timeout=600)],
    lease_seconds=5,
)
