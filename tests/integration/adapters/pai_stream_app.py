"""Pydantic AI agents whose model answers stream to ``GET /v1/tasks/{id}/events``.

``plain``: a Pydantic AI agent, hosted with ``PydanticAIAgent(stream=True)`` (the
framework itself calls ``Model.request``). ``watched``: a Pydantic AI agent with an event
stream handler (``ProcessEventStream``), so the framework streams by itself
(``Model.request_stream``); the handler counts the text deltas it is shown into a file
(``$PAI_STREAM_SEEN``), the proof that the framework's own stream still reaches it.
``quiet``: the control, the plain agent hosted without ``stream=True``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import ProcessEventStream
from pydantic_ai.messages import AgentStreamEvent, PartDeltaEvent, PartStartEvent, TextPart

from stalwart.adapters.pydantic_ai import PydanticAIAgent, ToolPolicy
from stalwart.agent import App
from stalwart.llm.sim import Rule, Scenario

INSTRUCTIONS = "You answer customers' questions about their orders, briefly."


def order_status(order_id: int) -> dict[str, Any]:
    """The status of an order."""
    return {"order_id": order_id, "status": "shipped", "carrier": "DHL", "eta_days": 2}


async def count_text(ctx: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
    """What a user's handler does with the stream: here, note each piece of text."""
    seen = 0
    async for event in events:
        if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
            seen += len(event.part.content)
        elif isinstance(event, PartDeltaEvent) and hasattr(event.delta, "content_delta"):
            seen += len(event.delta.content_delta)
    path = os.environ.get("PAI_STREAM_SEEN")
    if path and seen:
        with open(path, "a") as f:
            f.write(f"{seen}\n")


plain = Agent(instructions=INSTRUCTIONS, tools=[order_status])
watched = Agent(
    instructions=INSTRUCTIONS,
    tools=[order_status],
    capabilities=[ProcessEventStream(count_text)],
)

SCENARIO = Scenario(
    (
        Rule(match=r"order #(?P<oid>\d+)", call="order_status", arguments={"order_id": "{oid}"}),
        Rule(
            match=r"order #(?P<oid>\d+)",
            requires=("order_status",),
            answer="Your order #{oid} has shipped with DHL and should reach you within two "
            "days; the tracking link is in your confirmation e-mail.",
        ),
    )
)
POLICY = {"order_status": ToolPolicy(scopes=["orders:read"])}

app = App(
    agents=[
        PydanticAIAgent(
            name="plain",
            agent=plain,
            model="main",
            policies=POLICY,
            scopes=["orders:read"],
            stream=True,
        ),
        PydanticAIAgent(
            name="watched", agent=watched, model="main", policies=POLICY, scopes=["orders:read"]
        ),
        # the control: neither asked to stream nor streaming by itself
        PydanticAIAgent(
            name="quiet", agent=plain, model="main", policies=POLICY, scopes=["orders:read"]
        ),
    ],
    models={"main": ["sim:strong", "sim:weak"]},
    sim=True,
    scenario=SCENARIO,
)
