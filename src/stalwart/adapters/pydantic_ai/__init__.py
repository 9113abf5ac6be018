"""Pydantic AI agents hosted by stalwart (``pip install 'stalwart[pydantic-ai]'``).

Declare the agent you have::

    from pydantic_ai import Agent
    from stalwart.adapters.pydantic_ai import PydanticAIAgent, ToolPolicy

    support = Agent(instructions="...")          # your agent, unchanged

    @support.tool_plain
    def lookup_order(order_id: int) -> dict: ...

    AGENT = PydanticAIAgent(
        name="support", agent=support, model="main",
        policies={"lookup_order": ToolPolicy(scopes=["orders:read"])},
        scopes=["orders:read"],
    )

Its model requests go through the app's model chain, journaled; its tool calls through
the guard, journaled or ledgered. See docs/adapters/pydantic-ai.md.
"""

import importlib.util

from stalwart.errors import ConfigError

try:  # the capability hooks the adapter is built on (tested with pydantic-ai-slim 2.78)
    _FOUND = importlib.util.find_spec("pydantic_ai.capabilities") is not None
except ModuleNotFoundError:  # Pydantic AI is not installed
    _FOUND = False
if not _FOUND:
    raise ConfigError(
        "stalwart.adapters.pydantic_ai needs Pydantic AI with capabilities "
        "(pydantic_ai.capabilities; tested with pydantic-ai-slim 2.78): "
        "pip install 'stalwart[pydantic-ai]' 'pydantic-ai-slim>=2.78'"
    )

from stalwart.adapters.pydantic_ai._agent import PydanticAIAgent, StalwartDurability
from stalwart.adapters.pydantic_ai._convert import (
    instructions_of,
    to_messages,
    to_response,
    to_tool_specs,
)
from stalwart.adapters.pydantic_ai._model import StalwartModel
from stalwart.adapters.pydantic_ai._tools import GuardedToolset, ToolPolicy, idempotency_key

__all__ = [
    "GuardedToolset",
    "PydanticAIAgent",
    "StalwartDurability",
    "StalwartModel",
    "ToolPolicy",
    "idempotency_key",
    "instructions_of",
    "to_messages",
    "to_response",
    "to_tool_specs",
]
