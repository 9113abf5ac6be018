"""Helpdesk variants for alert tests (imported by the agent processes too)."""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import RESOLVER
from examples.helpdesk.app import app as helpdesk

# a simple ticket fits (2 model calls); a refund (4 calls, longer prompts) meets the limit
_tight = dataclasses.replace(
    RESOLVER.security, budget=dataclasses.replace(RESOLVER.security.budget, task_usd=0.017)
)
budgeted = dataclasses.replace(
    helpdesk,
    agents=[
        a if a.name != "resolver" else dataclasses.replace(a, security=_tight)
        for a in helpdesk.agents
    ],
)
