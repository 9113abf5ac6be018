"""OpenAI Agents SDK agents hosted by stalwart (``pip install 'stalwart[openai-agents]'``).

The SDK's loop runs unchanged inside a stalwart task; its model calls go through the
app's model chains as journaled steps, its function tools through the guard and the
journal (side effects through the idempotency ledger), its tool approvals through
stalwart's approval queue, and its hosted tracing export is off. See
docs/adapters/openai-agents.md::

    from stalwart.adapters.openai_agents import OpenAIAgentsAgent, ToolPolicy

    SUPPORT = OpenAIAgentsAgent(
        name="support", agent=support_agent, model="main",
        tool_policies={"refund_order": ToolPolicy(scopes=["payments:write"], side_effect=True)},
    )
"""

from stalwart.adapters.openai_agents._model import StalwartModel, StalwartModelProvider
from stalwart.adapters.openai_agents._run import (
    OpenAIAgentsAgent,
    StalwartRunner,
    disable_hosted_tracing,
)
from stalwart.adapters.openai_agents._tools import ToolPolicy, current_idempotency_key

__all__ = [
    "OpenAIAgentsAgent",
    "StalwartModel",
    "StalwartModelProvider",
    "StalwartRunner",
    "ToolPolicy",
    "current_idempotency_key",
    "disable_hosted_tracing",
]
