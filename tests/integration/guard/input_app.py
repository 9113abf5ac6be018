"""An app whose agent declares an input schema and tight limits (for the bad-input test)."""

from __future__ import annotations

from typing import Any

import pydantic

from stalwart.agent import App, PythonAgent, TaskContext
from stalwart.guard import InputLimits, Security


class Ticket(pydantic.BaseModel):
    text: str
    priority: int = 0


async def echo(ctx: TaskContext, ticket: Any) -> Any:
    return {"status": "completed", "text": ticket["text"], "priority": ticket["priority"]}


app = App(
    agents=[
        PythonAgent(
            name="echo",
            fn=echo,
            security=Security(input_schema=Ticket, inputs=InputLimits(max_string=1000)),
        )
    ],
)
