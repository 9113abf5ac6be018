"""An OpenAI Agents SDK agent whose side-effect tool asks for approval (``needs_approval``).

Closing an account goes through a person: the SDK interrupts the run, stalwart parks the
task on its approval queue. Closures are appended to ``$OAI_CLOSED`` (one line each),
keyed by the call's idempotency key, so a test counts deliveries.
"""

from __future__ import annotations

import os

from agents import Agent, function_tool

from stalwart.adapters.openai_agents import (
    OpenAIAgentsAgent,
    ToolPolicy,
    current_idempotency_key,
)
from stalwart.agent import App
from stalwart.llm.sim import Rule, Scenario


@function_tool(needs_approval=True)
def close_account(customer: str) -> str:
    """Close a customer's account for good.

    Args:
        customer: The customer's name.
    """
    with open(os.environ["OAI_CLOSED"], "a") as f:
        f.write(f"{customer} {current_idempotency_key()}\n")
    return f"closed the account of {customer}"


accounts_agent = Agent(
    name="Accounts", instructions="Close accounts when asked.", tools=[close_account]
)

CLOSE = r"close the account of (?P<customer>\w+)"
SCENARIO = Scenario(
    (
        Rule(match=CLOSE, call="close_account", arguments={"customer": "{customer}"}),
        Rule(match=CLOSE, requires=("close_account",), answer="Done: {result:close_account}"),
    )
)

app = App(
    agents=[
        OpenAIAgentsAgent(
            name="accounts",
            agent=accounts_agent,
            model="main",
            tool_policies={
                "close_account": ToolPolicy(scopes=["accounts:write"], side_effect=True)
            },
        )
    ],
    models={"main": ["sim:strong"]},
    sim=True,
    scenario=SCENARIO,
)
