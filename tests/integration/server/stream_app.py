"""The helpdesk with its LLM agents streaming their answers (``LLMAgent.stream``)."""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import app as helpdesk

from stalwart.agent import LLMAgent

app = dataclasses.replace(
    helpdesk,
    agents=[
        dataclasses.replace(a, stream=True) if isinstance(a, LLMAgent) else a
        for a in helpdesk.agents
    ],
)
