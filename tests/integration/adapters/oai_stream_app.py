"""The OpenAI Agents SDK support example run with ``Runner.run_streamed`` (hosted as
:meth:`StalwartRunner.run_streamed`): the agent's code reads the SDK's own event stream,
as an SDK app that shows tokens live does.

Per model answer the code notes how many text deltas (``response.output_text.delta``)
it was handed and how many characters they held: into ``SEEN`` (this process) and, when
``$OAI_STREAM_SEEN`` names a file, into that file (from an agent process).
``KILL["after_answer"]``: the next run that has read a text answer raises
:class:`Killed` (a stand-in for SIGKILL, after the answer was journaled), once.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from examples.openai_agents_support import app as oai
from examples.openai_agents_support.agent import support_agent
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from stalwart.adapters.openai_agents import StalwartRunner
from stalwart.agent import App, PythonAgent, TaskContext

SEEN: list[tuple[int, int]] = []
KILL = {"after_answer": False}


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the task catches it."""


def _note(pieces: int, chars: int) -> None:
    SEEN.append((pieces, chars))
    path = os.environ.get("OAI_STREAM_SEEN")
    if path:
        with open(path, "a") as f:
            f.write(f"{pieces} {chars}\n")


async def run_streamed(ctx: TaskContext, task_input: Any) -> dict[str, Any]:
    result = StalwartRunner.run_streamed(
        support_agent, task_input["text"], task=ctx, stream=True, max_turns=10
    )
    pieces = chars = 0
    async for event in result.stream_events():
        if event.type != "raw_response_event":
            continue
        if isinstance(event.data, ResponseTextDeltaEvent):
            pieces, chars = pieces + 1, chars + len(event.data.delta)
        elif isinstance(event.data, ResponseCompletedEvent):
            _note(pieces, chars)
            if KILL["after_answer"] and chars:
                KILL["after_answer"] = False
                raise Killed
            pieces = chars = 0
    return {"status": "completed", "answer": result.final_output, "usage": ctx.usage.as_dict()}


STREAMED = PythonAgent(
    name="run_streamed",
    fn=run_streamed,
    model="main",
    tools=oai.SUPPORT.tools,
    scopes=oai.SUPPORT.scopes,
    security=oai.SUPPORT.security,
)
app = dataclasses.replace(oai.app, agents=[STREAMED])
assert isinstance(app, App)
