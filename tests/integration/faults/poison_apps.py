"""Apps with poison steps, for the fault tests (imported by agent processes)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext


async def work(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    """``{"kind": "ok"}`` answers at once; the other kinds poison their process."""
    kind = task_input["kind"]
    if kind == "block":  # a step that blocks the event loop
        time.sleep(60)
    elif kind == "spin":  # a step that busy-loops without yielding
        end = time.monotonic() + 60
        while time.monotonic() < end:
            pass
    elif kind == "memory":  # a step that grows past the agent's memory limit, then waits
        hoard = []
        for _ in range(24):  # 384 MiB, pages touched, yielding between chunks
            hoard.append(b"\x01" * (16 << 20))
            await asyncio.sleep(0)
        await asyncio.sleep(60)
        return {"held": len(hoard)}
    elif kind == "slow":  # blocks the loop past the task_timeout of its agent
        time.sleep(60)
    elif kind == "fixable":  # poison until the fix (a file) is deployed
        time.sleep(0 if os.path.exists(task_input["fix"]) else 60)
    return {"kind": kind, "done": True}


app = App(
    agents=[
        PythonAgent(name="worker", fn=work, max_tasks=8),
        PythonAgent(name="hog", fn=work, max_tasks=1, memory_limit_mb=200),
        PythonAgent(name="timed", fn=work, task_timeout=1.0, quarantine_after=3),
    ],
    lease_seconds=5,
)
