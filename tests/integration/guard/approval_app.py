"""The helpdesk app whose resolver waits up to 30 s for a person to decide a held call."""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import RESOLVER, SECURITY, TRIAGE
from examples.helpdesk.app import app as helpdesk

WAITING = dataclasses.replace(
    SECURITY, taint=dataclasses.replace(SECURITY.taint, approval_wait_s=30)
)
app = dataclasses.replace(
    helpdesk, agents=[TRIAGE, dataclasses.replace(RESOLVER, security=WAITING)]
)
