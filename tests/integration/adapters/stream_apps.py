"""The OpenAI Agents SDK and LangGraph support examples, asked to stream their model
answers to ``GET /v1/tasks/{id}/events`` (``stream=True``), each beside the same agent
not asked to (the control, ``quiet``)."""

from __future__ import annotations

import dataclasses

from examples.langgraph_support import app as lg
from examples.openai_agents_support import app as oai

oai_app = dataclasses.replace(
    oai.app,
    agents=[
        dataclasses.replace(oai.SUPPORT, name="streamed", stream=True),
        dataclasses.replace(oai.SUPPORT, name="quiet"),
    ],
)
lg_app = dataclasses.replace(
    lg.app,
    agents=[
        dataclasses.replace(lg.SUPPORT, name="streamed", stream=True),
        dataclasses.replace(lg.SUPPORT, name="quiet"),
    ],
)
