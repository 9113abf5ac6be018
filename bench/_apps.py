"""Variants of the helpdesk app that benchmarks compare it with in the same run.

Importable by the node's agent processes as ``bench._apps:<name>`` (the repository
root is the working directory of ``make bench``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from examples.helpdesk.app import app as helpdesk

from stalwart.guard import Budget

# The helpdesk without spend limits: no reservation or settlement per model call, so
# its throughput against the shipped app's is what the budget costs.
unbudgeted = dataclasses.replace(
    helpdesk,
    agents=[
        dataclasses.replace(a, security=dataclasses.replace(a.security, budget=Budget()))
        for a in helpdesk.agents
    ],
)

# The helpdesk with its spend ledger in a SQLite file of its own (Budget.ledger) instead
# of the store's: reservations then no longer wait for the journal's write lock. The
# bench sets STALWART_BENCH_LEDGER (agent processes inherit it) to a fresh file.
_LEDGER = "sqlite:///" + os.environ.get(
    "STALWART_BENCH_LEDGER", os.path.join(tempfile.gettempdir(), "stalwart-bench-ledger.db")
)
separate_ledger = dataclasses.replace(
    helpdesk,
    agents=[
        dataclasses.replace(
            a,
            security=dataclasses.replace(
                a.security, budget=dataclasses.replace(a.security.budget, ledger=_LEDGER)
            ),
        )
        for a in helpdesk.agents
    ],
)
