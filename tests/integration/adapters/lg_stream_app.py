"""The LangGraph support example with a model node that reads its answers as a token
stream, as a LangGraph app that shows tokens live writes it: ``model.astream(...)`` in an
``async def`` node (``astreamed``), ``model.stream(...)`` in a plain ``def`` node
(``synced``). Both agents say ``stream=True``, so the same tokens also go to
``GET /v1/tasks/{id}/events``.

Each node notes, per model answer, how many text chunks it was handed and how many
characters they held: into ``SEEN`` (in this process) and, when ``$LG_STREAM_SEEN`` names a
file, into that file (from an agent process), the proof that the graph itself saw the
answer arrive in pieces. ``KILL["after_answer"]``: the next node that has read a text
answer whole raises :class:`Killed` (a stand-in for SIGKILL, after the answer was
journaled), once.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from examples.langgraph_support import app as lg
from examples.langgraph_support.graph import SYSTEM, model, tools
from langchain_core.messages import AIMessageChunk
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from stalwart.agent import App

SEEN: list[tuple[int, int]] = []
KILL = {"after_answer": False}


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the task catches it."""


def _note(pieces: int, chars: int) -> None:
    SEEN.append((pieces, chars))
    path = os.environ.get("LG_STREAM_SEEN")
    if path:
        with open(path, "a") as f:
            f.write(f"{pieces} {chars}\n")


def _answered(message: AIMessageChunk | None, pieces: int, chars: int) -> dict[str, Any]:
    assert message is not None
    _note(pieces, chars)
    if KILL["after_answer"] and message.text and not message.tool_call_chunks:
        KILL["after_answer"] = False
        raise Killed
    return {"messages": [message]}


async def call_model_streaming(state: MessagesState) -> dict[str, Any]:
    message: AIMessageChunk | None = None
    pieces = chars = 0
    async for chunk in model.astream([{"role": "system", "content": SYSTEM}, *state["messages"]]):
        message = chunk if message is None else message + chunk
        if chunk.text:
            pieces, chars = pieces + 1, chars + len(chunk.text)
    return _answered(message, pieces, chars)


def call_model_streaming_sync(state: MessagesState) -> dict[str, Any]:
    message: AIMessageChunk | None = None
    pieces = chars = 0
    for chunk in model.stream([{"role": "system", "content": SYSTEM}, *state["messages"]]):
        message = chunk if message is None else message + chunk
        if chunk.text:
            pieces, chars = pieces + 1, chars + len(chunk.text)
    return _answered(message, pieces, chars)


def _graph(node: Any) -> StateGraph[Any]:
    builder = StateGraph(MessagesState)
    builder.add_node("agent", node)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder


ASTREAMED = dataclasses.replace(
    lg.SUPPORT, name="astreamed", graph=_graph(call_model_streaming), stream=True
)
SYNCED = dataclasses.replace(
    lg.SUPPORT, name="synced", graph=_graph(call_model_streaming_sync), stream=True
)
app = dataclasses.replace(lg.app, agents=[ASTREAMED, SYNCED])
assert isinstance(app, App)
