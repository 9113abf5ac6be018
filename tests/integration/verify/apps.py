"""Apps with one mechanism switched off, to show the matching item fails."""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import app as helpdesk

from stalwart.llm import Provider

# no fallback chain: the primary alone
no_fallback = dataclasses.replace(helpdesk, models={"main": ["sim:strong"]})

_sim = helpdesk.providers.get("sim") or Provider("http://replaced-by-the-node")
# no circuit breaker on the model provider
no_breaker = dataclasses.replace(
    helpdesk, providers={**helpdesk.providers, "sim": dataclasses.replace(_sim, breaker=None)}
)
# no retries on the model provider
no_retry = dataclasses.replace(
    helpdesk, providers={**helpdesk.providers, "sim": dataclasses.replace(_sim, retry=None)}
)
