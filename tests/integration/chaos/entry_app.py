"""An app whose entry agent is not its first: ``stalwart soak`` (and load and chaos)
must send its tasks to ``App.entry``; the first agent refuses them."""

from __future__ import annotations

from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext


async def first(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    raise ValueError("the first agent is not the entry: it takes no tasks")


async def front_desk(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    return {"greeted": task_input["name"]}


def workload(count: int, seed: int = 1) -> list[dict[str, Any]]:
    return [{"name": f"visitor {seed}-{n}"} for n in range(count)]


app = App(
    agents=[PythonAgent(name="first", fn=first), PythonAgent(name="front", fn=front_desk)],
    entry="front",
    workload="tests.integration.chaos.entry_app:workload",
)
