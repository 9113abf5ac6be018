"""An app whose one agent runs a long step, then a side effect: for the cancel tests.

The input names a directory and a mode. The task writes ``<id>.started`` when its long
step begins; the long step either sleeps cooperatively (``sleep``: an ``await`` the
cancel interrupts) or blocks its process's event loop (``block``: ``time.sleep``, so
only a kill stops it). After it, a ledgered side effect writes ``<id>.effect``: a
cancelled task must never get there. Mode ``quick`` skips the long step.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext


async def work(ctx: TaskContext, value: Any) -> dict[str, Any]:
    where = pathlib.Path(value["dir"])
    tid = ctx.task_id

    def started() -> bool:
        (where / f"{tid}.started").write_text("1")
        return True

    await ctx.durable.step("started", started)
    if value["mode"] == "sleep":

        async def nap() -> str:
            await asyncio.sleep(120)
            return "woke"

        await ctx.durable.step("long", nap)
    elif value["mode"] == "block":

        def stuck() -> str:
            time.sleep(120)  # a step that never yields: its event loop is blocked
            return "woke"

        await ctx.durable.step("long", stuck)

    def effect(*, idempotency_key: str) -> str:
        (where / f"{tid}.effect").write_text(idempotency_key)
        return "done"

    await ctx.durable.effect("mark", effect, deduplicated=False)
    return {"done": tid}


app = App(
    agents=[PythonAgent("worker", fn=work, max_tasks=4)],
    lease_seconds=6.0,
)
