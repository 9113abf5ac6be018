"""The helpdesk app with a multi-step obedient model (examples/helpdesk/attacks.py)."""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import app as helpdesk
from examples.helpdesk.attacks import planner

from stalwart.llm import ModelClient, Provider
from stalwart.testing import ObedientModel


def obedient(model: str) -> ModelClient:
    """The provider's client factory: one obedient model per chain."""
    return ObedientModel(planner, name=f"redteam:{model}")


app = dataclasses.replace(
    helpdesk,
    models={"main": ["redteam:obedient"]},
    providers={**helpdesk.providers, "redteam": Provider(client=obedient, self_hosted=True)},
)
