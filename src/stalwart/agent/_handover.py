"""Hand-overs that hold no worker while they wait.

A task that hands work to another agent (``ctx.hand_over``) used to *call* that
agent and wait inside the call for the sub-task to end. The callee's process
answers calls from a small pool of workers (``Agent.max_concurrency``, 64 for a
task agent), so every waiting hand-over held one of them for the whole life of
its sub-task: with model calls of 2 s, no more than 64 tickets could be in their
second phase at once, whatever ``max_tasks`` said (issue 19 measured 0.35 of a
plain asyncio client's throughput at 1,000 tickets in flight).

Now the caller does the bookkeeping itself, in its own journaled step:

1. it creates the sub-task in the store under an id derived from its own task
   and step (so a resumed caller finds the same sub-task and never creates a
   second one);
2. it *casts* ``{"run": id, "notify": <caller agent>}`` to the callee, which
   wakes its claim loop and remembers whom to tell;
3. it waits on a future in its own process. The agent that runs the sub-task
   casts ``{"finished": id}`` back when it ends (at once, if the sub-task ended
   before the wake-up arrived: the callee remembers its recent ends). A cast can
   be lost (the callee restarted, another node ran the sub-task), so the waiter
   also reads the task's record, first after ``first_poll`` (1 s), then backing
   off to ``poll_cap`` (2 s): a lost notice costs at most that much latency, never
   the outcome, and a hand-over whose notice arrives costs no read while it waits.

Waiting is then an asyncio future per hand-over: a thousand of them cost a
thousand small objects, not a thousand workers. The outcome is the same
``{"task_id", "status", "result"}`` the call returned, so journals written
before this change replay unchanged. Past ``timeout`` the wait raises
:class:`~stalwart.errors.CallTimeout`; the sub-task itself keeps running (as
it did when a call timed out).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stalwart.durable import Store
from stalwart.errors import CallTimeout, StoreError
from stalwart.observe import current_traceparent
from stalwart.runtime import AgentContext

__all__ = ["HandOvers"]


class HandOvers:
    """One per agent process: its outstanding hand-overs and their notices."""

    def __init__(
        self,
        store: Store,
        runtime: AgentContext,
        agent: str,
        *,
        first_poll: float = 1.0,
        poll_cap: float = 2.0,
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._agent = agent
        self._first_poll = first_poll
        self._poll_cap = poll_cap
        self._waiting: dict[str, asyncio.Event] = {}

    @property
    def waiting(self) -> int:
        """Hand-overs of this process waiting for their sub-task now."""
        return len(self._waiting)

    async def run(self, callee: str, task_id: str, task_input: Any, *, timeout: float) -> Any:
        """Create (once) the sub-task ``task_id`` for ``callee``, wake it, wait for its end."""
        deadline = time.monotonic() + timeout
        try:
            # Created first, read only if it exists already (a resumed caller, or a retry
            # of this step after a lost answer): a first hand-over costs one transaction.
            # The current span (this hand-over's) is stored with the sub-task: whoever
            # claims it, whenever, starts its span under it (no race with the cast below).
            await self._store.create_task(
                callee, task_input, task_id=task_id, trace=current_traceparent()
            )
        except StoreError:
            record = await self._store.get_task(task_id)
            if record is None:
                raise
            if record.finished:
                return _outcome(record.id, record.status, record.outcome)
        notice = self._waiting.setdefault(task_id, asyncio.Event())
        try:
            self._runtime.cast(callee, {"run": task_id, "notify": self._agent})
            pause = self._first_poll
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CallTimeout(
                        f"hand-over to {callee!r}: sub-task {task_id!r} did not finish within "
                        f"{timeout:g} s (it keeps running; raise the hand-over's timeout if "
                        "such work takes longer)",
                        target=callee,
                    )
                try:
                    async with asyncio.timeout(min(pause, left)):
                        await notice.wait()
                except TimeoutError:
                    pause = min(pause * 2, self._poll_cap)  # no notice: read the record
                notice.clear()
                record = await self._store.get_task(task_id)
                if record is None:
                    raise StoreError(f"sub-task {task_id!r} of {callee!r} vanished from the store")
                if record.finished:
                    return _outcome(record.id, record.status, record.outcome)
        finally:
            self._waiting.pop(task_id, None)

    def finished(self, task_id: str) -> None:
        """A ``{"finished": id}`` notice arrived: wake its waiter (if it still waits)."""
        notice = self._waiting.get(task_id)
        if notice is not None:
            notice.set()


def _outcome(task_id: str, status: str, result: Any) -> dict[str, Any]:
    return {"task_id": task_id, "status": status, "result": result}
