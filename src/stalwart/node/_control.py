"""Task control on a node: cancel a task, and wake tasks parked for an approval.

**Cancel.** :meth:`TaskControl.cancel` first ends the task in the store
(``Store.cancel``: status ``cancelled``, fencing token bumped), so from that
moment no claim takes it, a later resume does not run it, and the runner still
holding it is refused every write -- a side effect that has not started never
starts (its ledger entry is a fenced write). Then the step in flight is
interrupted: if the task's last lease owner is an agent process of this node,
the node asks it to cancel the task (``{"op": "cancel"}``: its asyncio task is
cancelled, so the step gets ``CancelledError`` at its next ``await``); a
process that does not answer within ``grace`` (its loop is blocked) is killed,
and its supervisor restarts it (its other tasks resume from their journals).

Every node also *sweeps* the store (every ``interval``): a task cancelled
elsewhere (another node's API, ``stalwart task cancel`` on the store) whose last
owner is one of this node's processes is stopped the same way, so cancel works
across a cluster sharing one PostgreSQL store.

**Durable approvals.** The sweep also looks at tasks ``awaiting_approval``: a
held call still undecided past its deadline is denied (``decided_by =
"deadline"``), and a task whose call has been decided is made pending again and
its agent woken; the replay reaches the held call and finds the decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from stalwart.durable import Store, TaskQuery, TaskRecord
from stalwart.errors import CallTimeout, ConfigError, NoProcess, StalwartError
from stalwart.guard import ApprovalQueue
from stalwart.observe import get_logger

if TYPE_CHECKING:
    from stalwart.node._node import Node

__all__ = ["CANCEL_GRACE_S", "CancelOutcome", "SWEEP_INTERVAL_S", "TaskControl"]

CANCEL_GRACE_S = 0.5
"""How long an agent process has to stop a cancelled task before it is killed."""
SWEEP_INTERVAL_S = 0.25
"""How often a node looks for cancels from elsewhere and decided or expired approvals."""

_log = get_logger("stalwart.node.control")


@dataclasses.dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What :meth:`TaskControl.cancel` did.

    ``task`` is the record as it now is; ``cancelled`` is False when the task had
    already finished (its status says how). ``stopped`` says how the step in
    flight ended: ``not_running`` (nothing ran it here), ``yielded`` (its process
    interrupted it), ``killed`` (its process did not answer within the grace and
    was killed) or ``elsewhere`` (another node's process held it: that node's
    sweep stops it). ``seconds`` is the time the whole cancel took.
    """

    task: TaskRecord
    cancelled: bool
    stopped: str
    seconds: float


class TaskControl:
    """Cancel and approval handling for the app a node runs (see the module docstring)."""

    def __init__(
        self,
        node: Node,
        store: Store,
        store_url: str,
        agents: list[str],
        *,
        grace: float = CANCEL_GRACE_S,
        interval: float = SWEEP_INTERVAL_S,
    ) -> None:
        self.node = node
        self.store = store
        self.store_url = store_url
        self.agents = set(agents)
        self.grace = grace
        self.interval = interval
        self._queue: ApprovalQueue | None = None
        self._seen: dict[str, float] = {}  # cancelled tasks already stopped here
        self._since = time.time()

    # -- cancel ---------------------------------------------------------------------------
    async def cancel(self, task_id: str, *, by: str = "api") -> CancelOutcome | None:
        """Cancel ``task_id`` (see the module docstring); None if there is no such task."""
        started = time.monotonic()
        before = await self.store.get_task(task_id)
        if before is None:
            return None
        if before.finished:
            return CancelOutcome(before, False, "not_running", time.monotonic() - started)
        outcome = {"type": "Cancelled", "message": f"cancelled by {by}", "by": by}
        after = await self.store.cancel(task_id, outcome)
        if after is None:
            return None
        if after.status != "cancelled" or after.outcome != outcome:
            # it finished (or someone else cancelled it) between the read and the write
            return CancelOutcome(after, False, "not_running", time.monotonic() - started)
        self._seen[task_id] = time.time()
        self.node.events.emit(
            "task_cancel_requested", task_id=task_id, agent=after.agent, by=by,
            was=before.status,
        )  # fmt: skip
        stopped = "not_running"
        if before.status == "running":
            stopped = await self._stop(after)
        seconds = time.monotonic() - started
        self.node.events.emit(
            "task_cancelled", task_id=task_id, agent=after.agent, by=by, stopped=stopped,
            seconds=round(seconds, 4),
        )  # fmt: skip
        return CancelOutcome(after, True, stopped, seconds)

    async def _stop(self, task: TaskRecord) -> str:
        """Interrupt ``task``'s step in flight if one of this node's processes runs it."""
        owner = task.lease_owner or ""
        node_id, _, agent = owner.partition("/")
        if node_id != self.node.id:
            return "elsewhere" if owner else "not_running"
        if agent not in self.agents:
            return "not_running"
        try:
            proc = self.node.runtime.process(agent)
        except NoProcess:
            return "not_running"  # restarting: its restart does not resume a cancelled task
        try:
            stopped = await self.node.call(
                agent, {"op": "cancel", "task_id": task.id}, timeout=self.grace
            )
        except CallTimeout:
            # the process's loop is blocked (a step that does not yield): kill it; its
            # supervisor restarts it and the node charges its calls in flight
            self.node.runtime.host.kill(
                proc, f"task {task.id} was cancelled and the process did not yield within "
                f"{self.grace:g} s",
            )  # fmt: skip
            _log.warning("task_cancel_killed_process", task_id=task.id, agent=agent)
            return "killed"
        except NoProcess:
            return "not_running"
        except StalwartError as exc:
            _log.warning("task_cancel_call_failed", task_id=task.id, error=str(exc))
            return "not_running"
        return "yielded" if stopped else "not_running"

    # -- the sweep ------------------------------------------------------------------------
    async def run(self) -> None:
        """Sweep every ``interval`` until cancelled (the node's app service owns this)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                async with asyncio.timeout(max(10.0, self.interval * 4)):
                    await self.sweep()
            # the store, or the approval queue's own connection, may be down: log it,
            # drop the queue's connection (the next pass reconnects), and go on
            except Exception as exc:
                _log.warning("task_control_sweep_failed", error=repr(exc))
                with contextlib.suppress(Exception):
                    await self.close()

    async def sweep(self) -> None:
        """One pass: stop cancels from elsewhere, deny expired approvals, wake decided ones.
        Both listings are read in one transaction (a pass every 0.25 s on every node)."""
        recent, waiting = await self.store.list_tasks_each(
            (
                TaskQuery(status="cancelled", newest_first=True, limit=50),
                TaskQuery(status="awaiting_approval", limit=500),
            )
        )
        await self._sweep_cancels(recent)
        await self._sweep_approvals(waiting)

    async def _sweep_cancels(self, recent: list[TaskRecord]) -> None:
        prefix = f"{self.node.id}/"
        for task in recent:
            if task.id in self._seen or task.updated_at < self._since - 1.0:
                continue
            self._seen[task.id] = time.time()
            if (task.lease_owner or "").startswith(prefix):
                stopped = await self._stop(task)
                self.node.events.emit(
                    "task_cancel_seen", task_id=task.id, agent=task.agent, stopped=stopped,
                    after_s=round(time.time() - task.updated_at, 4),
                )  # fmt: skip
        if len(self._seen) > 10_000:  # forget the oldest half
            for tid, _ in sorted(self._seen.items(), key=lambda kv: kv[1])[:5_000]:
                del self._seen[tid]

    async def _sweep_approvals(self, waiting: list[TaskRecord]) -> None:
        if not waiting:
            return
        queue = await self._approvals()
        now = time.time()
        for task in waiting:
            info: Any = task.outcome
            approval = info.get("approval") if isinstance(info, dict) else None
            if not isinstance(approval, str):
                continue
            entry = await asyncio.to_thread(queue.get, approval)
            if entry is None:
                continue
            deadline = info.get("deadline")
            if entry.status == "pending" and isinstance(deadline, int | float) and now >= deadline:
                with contextlib.suppress(ConfigError):  # decided by a person meanwhile
                    entry = await asyncio.to_thread(
                        queue.decide, approval, approve=False, by="deadline"
                    )
                    self.node.events.emit(
                        "approval_expired", approval=approval, task_id=task.id, tool=entry.tool
                    )
            if entry.status != "pending":
                await self.resume(task.id, task.agent)

    async def resume(self, task_id: str, agent: str) -> bool:
        """Make a parked task pending again and wake its agent; False if it was not parked."""
        if not await self.store.wake(task_id):
            return False
        self.node.events.emit("task_resumed_after_approval", task_id=task_id, agent=agent)
        if agent in self.agents:
            with contextlib.suppress(NoProcess):  # restarting: its claim loop finds it
                self.node.cast(agent, {"run": task_id})
        return True

    async def _approvals(self) -> ApprovalQueue:
        if self._queue is None:
            self._queue = await asyncio.to_thread(ApprovalQueue, self.store_url)
        return self._queue

    async def close(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            await asyncio.to_thread(queue.close)
