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
   casts ``{"finished": id, "status", "outcome"}`` back when it ends (the end as it
   stored it, so the waiter returns it without reading the record; at once, if the
   sub-task ended before the wake-up arrived: the callee remembers its recent ends, and
   then the notice names the id only and the waiter reads the record). A cast can be
   lost (the callee restarted, another node ran the sub-task), so the waiter also reads
   the task's record, first after ``first_poll`` (1 s), then backing off to
   ``poll_cap`` (2 s): a lost notice costs at most that much latency, never the
   outcome. Those reads are shared: one read, in one transaction, takes the records of
   every hand-over of the process still waiting, and a waiter whose record a read took
   since it last looked does not read again (in a cluster, where most sub-tasks run on
   other nodes and send no notice, a process waiting on a thousand of them reads about
   once per ``first_poll``, not a thousand times per ``poll_cap``).

Waiting is then an asyncio future per hand-over: a thousand of them cost a
thousand small objects, not a thousand workers. The outcome is the same
``{"task_id", "status", "result"}`` the call returned, so journals written
before this change replay unchanged. Past ``timeout`` the wait raises
:class:`~stalwart.errors.CallTimeout`; the sub-task itself keeps running (as
it did when a call timed out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from stalwart.durable import Store
from stalwart.errors import CallTimeout, StoreError
from stalwart.observe import current_traceparent
from stalwart.runtime import AgentContext

__all__ = ["HandOvers"]


@dataclasses.dataclass(slots=True)
class _Wait:
    """One waiting hand-over: its wake-up, and what the notices and shared reads found."""

    notice: asyncio.Event
    end: tuple[str, Any] | None = None
    """The sub-task's ``(status, outcome)`` once it is known to have ended."""
    fresh: bool = False
    """A shared read took this record since the waiter last looked (no read needed)."""
    vanished: bool = False


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
        self._waiting: dict[str, _Wait] = {}
        self._reading: tuple[asyncio.Future[bool], frozenset[str]] | None = None
        self.reads = 0
        """Shared reads done (one transaction each), for tests and benches."""

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
        wait = self._waiting.setdefault(task_id, _Wait(asyncio.Event()))
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
                noticed = True
                try:
                    async with asyncio.timeout(min(pause, left)):
                        await wait.notice.wait()
                except TimeoutError:
                    noticed = False
                    pause = min(pause * 2, self._poll_cap)  # no notice: read the record
                wait.notice.clear()
                if wait.end is None and not wait.vanished and (noticed or not wait.fresh):
                    # a notice without the end, or no shared read took this record since
                    # this waiter last looked: read it (with every other waiter's)
                    await self._poll(task_id)
                wait.fresh = False
                if wait.vanished:
                    raise StoreError(f"sub-task {task_id!r} of {callee!r} vanished from the store")
                if wait.end is not None:
                    return _outcome(task_id, *wait.end)
        finally:
            self._waiting.pop(task_id, None)

    async def _poll(self, task_id: str) -> None:
        """Read, in one transaction, the records of every hand-over still waiting (one read
        in flight at a time: a caller whose record the read in flight covers waits for it)."""
        while self._reading is not None:
            inflight, covered = self._reading
            if await asyncio.shield(inflight) and task_id in covered:
                return  # done, and it took this record
        ids = [tid for tid, w in self._waiting.items() if w.end is None and not w.vanished]
        reading: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._reading = (reading, frozenset(ids))
        try:
            self.reads += 1
            records = {r.id: r for r in await self._store.get_tasks(ids)}
            for tid in ids:
                wait = self._waiting.get(tid)
                if wait is None:
                    continue
                record = records.get(tid)
                wait.fresh = True
                if record is None:
                    wait.vanished = True
                elif record.finished:
                    wait.end = (record.status, record.outcome)
                else:
                    continue
                wait.notice.set()
            reading.set_result(True)
        except asyncio.CancelledError:
            reading.set_result(False)  # not done: the others read again themselves
            raise
        except BaseException as exc:
            reading.set_exception(exc)  # every waiter of this read sees the failure
            reading.exception()  # (retrieved: each of them raises it)
            raise
        finally:
            self._reading = None

    def finished(self, task_id: str, end: tuple[str, Any] | None = None) -> None:
        """A ``{"finished": id}`` notice arrived: wake its waiter (if it still waits).
        ``end``: the sub-task's ``(status, outcome)`` as stored, when the notice carries it."""
        wait = self._waiting.get(task_id)
        if wait is not None:
            if end is not None:
                wait.end = end
            wait.notice.set()


def _outcome(task_id: str, status: str, result: Any) -> dict[str, Any]:
    return {"task_id": task_id, "status": status, "result": result}
