"""Charge the model calls an agent process left in flight when it died.

A budgeted call reserves its worst case before it is made and settles the actual
cost after. An agent killed mid-call (SIGKILL, OOM, a hang) never settles: its
reservation would hold room in the budget until ``stale_after`` (an hour), and
whether the provider billed the call is unknown. The node is the one that sees
the process exit (``agent_exited``), so it charges the dead holder's calls their
worst case (:meth:`~stalwart.guard.SpendLedger.charge_holder`): the counters never
under-count, and the room stops being held.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from stalwart.agent import App, TaskAgent
from stalwart.guard import SpendLedger
from stalwart.observe import Event, EventBus, Subscription, get_logger

__all__ = ["DeadCallCharger"]

_log = get_logger("stalwart.budget")

CHARGE_TIMEOUT_S = 30.0
"""Per ledger; the charge is one short transaction, but the ledger's database may be down."""


class DeadCallCharger:
    """Watches ``agent_exited`` on a node and charges each exited process's open calls."""

    def __init__(self, app: App, store_url: str, node_id: str, events: EventBus) -> None:
        self.ledgers = sorted(
            {a.security.budget.ledger or store_url for a in app.agents if a.security.budget.limited}
        )
        self.node_id = node_id
        self.events = events
        self._pending: set[asyncio.Task[None]] = set()
        # one connection per ledger for the node's life, opened at the first exit (not a
        # connection and the schema statements at every exit of a chaos run)
        self._ledgers: dict[str, SpendLedger] = {}
        self._ledgers_lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._subscription: Subscription | None = (
            events.subscribe(self._on_event) if self.ledgers else None
        )

    def _on_event(self, event: Event) -> None:
        if event.name == "agent_exited":  # emitted on the node's loop; be safe from threads
            self._loop.call_soon_threadsafe(self._start, dict(event.fields))

    def _start(self, fields: dict[str, Any]) -> None:
        task = asyncio.create_task(self.charge(str(fields.get("agent")), int(fields["pid"])))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def charge(self, agent: str, pid: int) -> None:
        holder = TaskAgent.ledger_holder(self.node_id, pid)
        for url in self.ledgers:
            try:
                async with asyncio.timeout(CHARGE_TIMEOUT_S):
                    calls, usd = await asyncio.to_thread(self._charge, url, holder)
            # Best effort by design: whatever fails here (the ledger's database down, a
            # driver error), the reservations still stop counting after stale_after.
            except Exception as exc:
                _log.warning("budget_charge_failed", agent=agent, holder=holder, error=str(exc))
                self._forget(url)  # the next exit reconnects
                continue
            if calls:
                self.events.emit(
                    "budget_dead_calls_charged", severity="warning", agent=agent, pid=pid,
                    calls=calls, charged_usd=round(usd, 6),
                )  # fmt: skip

    def _charge(self, url: str, holder: str) -> tuple[int, float]:
        with self._ledgers_lock:
            ledger = self._ledgers.get(url)
            if ledger is None:
                ledger = self._ledgers[url] = SpendLedger(url)
        return ledger.charge_holder(holder)

    def _forget(self, url: str) -> None:
        with self._ledgers_lock:
            ledger = self._ledgers.pop(url, None)
        if ledger is not None:
            with contextlib.suppress(Exception):  # it is broken already; only let it go
                ledger.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop watching; wait (bounded) for the charges already started; disconnect."""
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
        for url in list(self._ledgers):
            await asyncio.to_thread(self._forget, url)
