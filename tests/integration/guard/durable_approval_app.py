"""The helpdesk app with durable approvals: a held refund parks the resolver's task.

``app``: the default deadline (one day); ``resolver`` runs one task at a time, so a
second task completing while the first waits shows the parked task holds no process.
``deadline_app``: the refund's approval deadline is 2 s.
"""

from __future__ import annotations

import dataclasses

from examples.helpdesk.app import RESOLVER, SECURITY, TRIAGE
from examples.helpdesk.app import app as helpdesk

DURABLE = dataclasses.replace(
    SECURITY, taint=dataclasses.replace(SECURITY.taint, durable_approvals=True)
)
app = dataclasses.replace(
    helpdesk,
    agents=[TRIAGE, dataclasses.replace(RESOLVER, security=DURABLE, max_tasks=1)],
)

_rules = dict(DURABLE.taint.tools)
_rules["refund"] = dataclasses.replace(_rules["refund"], approval_deadline_s=2.0)
SHORT = dataclasses.replace(DURABLE, taint=dataclasses.replace(DURABLE.taint, tools=_rules))
deadline_app = dataclasses.replace(
    helpdesk, agents=[TRIAGE, dataclasses.replace(RESOLVER, security=SHORT, max_tasks=1)]
)
