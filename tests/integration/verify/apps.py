"""Apps with one mechanism switched off, to show the matching item fails."""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import app as helpdesk

from stalwart.llm import Provider
from stalwart.resilience import RetryPolicy

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
# retries without jitter: each wait is exactly its backoff bound (EH-1 must say so)
unjittered = dataclasses.replace(
    helpdesk,
    providers={
        **helpdesk.providers,
        "sim": dataclasses.replace(
            _sim, retry=RetryPolicy(max_attempts=3, base=0.2, multiplier=2.0, jitter=False)
        ),
    },
)
