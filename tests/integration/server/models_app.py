"""An app with one chain of two simulated models, for the model-readiness test."""

from __future__ import annotations

from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext


async def echo(ctx: TaskContext, task_input: Any) -> Any:
    return task_input


app = App(
    agents=[PythonAgent("echo", fn=echo, model="main")],
    models={"main": ["sim:strong", "sim:weak"]},
    sim=True,
)
