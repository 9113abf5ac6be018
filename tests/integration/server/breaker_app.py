"""An app whose one chain's breakers trip fast: for the readiness test of open breakers
(the sim answers, but every model's breaker is open)."""

from __future__ import annotations

from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext
from stalwart.errors import StepFailed
from stalwart.llm import Provider
from stalwart.resilience import BreakerConfig, RetryPolicy


async def ask(ctx: TaskContext, task_input: Any) -> Any:
    try:
        answer = await ctx.call_model([{"role": "user", "content": str(task_input)}])
    except StepFailed as exc:  # the model step failed: every model of the chain did
        return {"failed": exc.error_type}
    return {"answer": answer["content"]}


app = App(
    agents=[PythonAgent("asker", fn=ask, model="main")],
    models={"main": ["sim:strong", "sim:weak"]},
    providers={
        # the base URL is the node's sim's (sim=True); two failed attempts open a breaker
        "sim": Provider(
            "http://127.0.0.1:9/v1",
            retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.02),
            breaker=BreakerConfig(window_size=2, minimum_calls=2, wait_duration_in_open=120.0),
        )
    },
    sim=True,
)
