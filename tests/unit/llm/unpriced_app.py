"""An app whose model has no price: `stalwart run` must refuse it on stderr."""

from __future__ import annotations

from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext
from stalwart.llm import Provider


async def echo(ctx: TaskContext, task_input: Any) -> Any:
    return task_input


app = App(
    agents=[PythonAgent("echo", fn=echo, model="main")],
    models={"main": ["vllm:llama3"]},
    providers={"vllm": Provider("http://127.0.0.1:9/v1")},
)
