"""Apps with poison steps, for the fault tests (imported by agent processes)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext
from stalwart.errors import OutcomeUnknown


async def work(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    """``{"kind": "ok"}`` answers at once; the other kinds poison their process."""
    kind = task_input["kind"]
    if kind == "work":  # an ordinary task: some waiting, no harm
        await asyncio.sleep(float(task_input.get("s", 0.05)))
    elif kind == "block":  # a step that blocks the event loop
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


async def mailer(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    """Sends one e-mail (at most once); the first attempt's process dies mid-call."""
    marker = task_input["marker"]

    def send(to: str, *, idempotency_key: str) -> dict[str, Any]:
        if not os.path.exists(marker):  # the first time: killed mid-call, outcome unknown
            with open(marker, "w") as f:
                f.write(idempotency_key)
            os.kill(os.getpid(), signal.SIGKILL)
        return {"sent_to": to}

    try:
        await ctx.durable.effect("send_email", send, task_input["to"], deduplicated=False)
    except OutcomeUnknown:
        return {"status": "completed", "answer": "the customer may have been e-mailed"}
    return {"status": "completed", "answer": "the customer was e-mailed"}


app = App(
    agents=[
        PythonAgent(name="worker", fn=work, max_tasks=8),
        PythonAgent(name="hog", fn=work, max_tasks=1, memory_limit_mb=200),
        PythonAgent(name="timed", fn=work, task_timeout=1.0, quarantine_after=3),
        PythonAgent(name="mailer", fn=mailer),
    ],
    lease_seconds=5,
)


tight = App(
    agents=[PythonAgent(name="worker", fn=work, max_tasks=4)],
    lease_seconds=5,
    max_pending=5,
    max_pending_node=8,
)
"""Admission limits small enough for a test to reach."""
