"""Variants of the helpdesk app that benchmarks compare it with in the same run.

Importable by the node's agent processes as ``bench._apps:<name>`` (the repository
root is the working directory of ``make bench``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable

from examples.helpdesk.app import app as helpdesk

from stalwart.agent import App
from stalwart.guard import Budget


def _with_budget(budget_of: Callable[[Budget], Budget]) -> App:
    """The helpdesk with each agent's budget replaced by ``budget_of(its budget)``."""
    return dataclasses.replace(
        helpdesk,
        agents=[
            dataclasses.replace(
                a, security=dataclasses.replace(a.security, budget=budget_of(a.security.budget))
            )
            for a in helpdesk.agents
        ],
    )


# The helpdesk without spend limits: no reservation or settlement per model call, so
# its throughput against the shipped app's is what the budget costs.
unbudgeted = _with_budget(lambda _budget: Budget())

# The helpdesk with its spend ledger in a SQLite file of its own (Budget.ledger) instead
# of the store's: reservations then no longer wait for the journal's write lock. The
# bench sets STALWART_BENCH_LEDGER (agent processes inherit it) to a fresh file.
_LEDGER = "sqlite:///" + os.environ.get(
    "STALWART_BENCH_LEDGER", os.path.join(tempfile.gettempdir(), "stalwart-bench-ledger.db")
)
separate_ledger = _with_budget(lambda budget: dataclasses.replace(budget, ledger=_LEDGER))


# The helpdesk on the runtime's defaults: its agents' max_tasks reset to the default
# (1000), as an app that waits on real, slow models would run (bench/slow_model.py).
_DEFAULT_MAX_TASKS = next(
    f.default for f in dataclasses.fields(type(helpdesk.agents[0])) if f.name == "max_tasks"
)
defaults = dataclasses.replace(
    helpdesk,
    agents=[dataclasses.replace(a, max_tasks=_DEFAULT_MAX_TASKS) for a in helpdesk.agents],
)
