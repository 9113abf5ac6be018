"""Helpdesk variants for SE-1, SE-4 and LC-3 with their mechanism switched off (or a leak).

Imported by the agent processes too (they load the app by reference).
``STALWART_TEST_UNENFORCED`` holds the test process's pid: in every *other*
process importing this module (the fork server and the agents), the spend
ledger then applies no limit -- budgets configured, enforcement off.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from examples.helpdesk.app import RESOLVER, TRIAGE, triage
from examples.helpdesk.app import app as helpdesk

from stalwart.agent import TaskContext
from stalwart.guard import Budget
from stalwart.llm import Provider

__all__ = ["leaky", "plain_key_no_budget", "thread_leaky", "unenforced"]

# built at import, so that no literal key sits in this file: SE-1 must catch it in the
# app's configuration, where a provider's key is a value instead of a secret reference
_PLAIN = "sk-" + "plainly" * 4 + "Written0"

_unbudgeted = dataclasses.replace(
    RESOLVER, security=dataclasses.replace(RESOLVER.security, budget=Budget())
)
plain_key_no_budget = dataclasses.replace(
    helpdesk,
    agents=[TRIAGE, _unbudgeted],
    providers={"sim": Provider("http://set-by-the-node", api_key=_PLAIN)},
)
"""The sim's key written as a value (SE-1 fails) and no spend limit at all (SE-4 fails)."""

unenforced = helpdesk
"""The helpdesk, whose agents ignore its limits when ``STALWART_TEST_UNENFORCED`` is set."""


def _unenforce() -> None:
    pid = os.environ.get("STALWART_TEST_UNENFORCED", "")
    if not pid.isdigit() or int(pid) == os.getpid():
        return
    from stalwart.guard import SpendLedger

    def no_limits(self: Any, budget: Any, agent: str, task_id: str) -> tuple[Any, ...]:
        return ()

    SpendLedger._limits = no_limits  # type: ignore[method-assign]


_unenforce()

_hoard: list[bytes] = []


async def _leaky_triage(ctx: TaskContext, ticket: Any) -> dict[str, Any]:
    # 4 MiB kept per ticket, touched: resident. With 1 MiB, a machine at load 9 started
    # so few tickets in the soak (its queue grew instead) that the growth stayed within
    # what the trend test allows, and only the queue was flagged
    _hoard.append(b"\x01" * (4 * 2**20))
    return await triage(ctx, ticket)


leaky = dataclasses.replace(
    helpdesk,
    agents=[dataclasses.replace(TRIAGE, fn=_leaky_triage), RESOLVER],
)
"""The helpdesk whose triage agent keeps 4 MiB per ticket: a leak LC-3 must flag."""


_never = threading.Event()  # never set: a thread waiting on it never exits


async def _thread_leaky_triage(ctx: TaskContext, ticket: Any) -> dict[str, Any]:
    # a thread per ticket that never exits: unbounded growth, unlike a pool that fills up
    threading.Thread(target=_never.wait, daemon=True, name="leaked").start()
    return await triage(ctx, ticket)


thread_leaky = dataclasses.replace(
    helpdesk,
    agents=[dataclasses.replace(TRIAGE, fn=_thread_leaky_triage), RESOLVER],
)
"""The helpdesk whose triage agent starts a thread per ticket that never exits: LC-3's
plateau test on threads must still flag it."""
