"""The helpdesk app with the sim's API key as a secret reference (for the rotation test)."""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import app as helpdesk

from stalwart.llm import Provider

app = dataclasses.replace(
    helpdesk,
    providers={"sim": Provider("http://replaced-by-the-node", api_key="secret://sim-api-key")},
)
