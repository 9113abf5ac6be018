"""Poison tasks: a task whose execution kills its agent process is quarantined.

The host kills an agent process whose loop a step holds past the hang
threshold (``hung``), past the task's ``task_timeout`` (``task_timeout``), or
whose memory passes its limit (``memory_limit``), and names the task its last
pulse blamed. Before the supervisor hears of the exit (and restarts the agent,
which would resume the task at once), :class:`PoisonGuard` settles the blamed
task in the store:

- ``task_timeout``: the task fails at once (``TaskTimeout``), as a task whose
  loop was free would have at its deadline;
- otherwise, once the task has been started ``quarantine_after`` times (the
  row's ``attempts``: the first claim, then one resume per kill), it ends
  ``quarantined`` with the reason and the last error; before that it is left
  to the restarted agent, which resumes it from its journal.

Why this keeps the node up, in OTP's terms: every kill is still a crash that
counts toward the supervisor's restart intensity (nothing is hidden from it),
but a task is charged at most ``quarantine_after`` kills, and the app refuses
a ``quarantine_after`` above its ``intensity``; so one poison task is
quarantined before its kills can make the supervisor give up. (Several poison
tasks at once can still exhaust the intensity, as several crashing bugs would:
the node then exits for its orchestrator to restart, and each task keeps its
count across the restart because the count is the durable ``attempts``.)
"""

from __future__ import annotations

from typing import Any

from stalwart.agent import App
from stalwart.durable import Store
from stalwart.errors import ConfigError, LeaseLost, StoreError
from stalwart.observe import EventBus, catalog, get_logger
from stalwart.runtime import ExitInfo

__all__ = ["PoisonGuard"]

_log = get_logger("stalwart.node")


class PoisonGuard:
    """The exit hook that fails or quarantines the task blamed for a killed agent."""

    def __init__(self, app: App, store: Store, node_id: str, events: EventBus) -> None:
        self.app = app
        self.store = store
        self.node_id = node_id
        self.events = events

    async def on_exit(self, info: ExitInfo) -> None:
        if info.blame is None:
            return
        try:
            task = await self.store.get_task(info.blame)
        except StoreError as exc:
            _log.warning("poison_check_failed", task_id=info.blame, error=str(exc))
            return
        if task is None or task.finished:
            return
        try:
            limit = self.app.quarantine_limit(task.agent)
        except ConfigError:
            return  # a task of an agent this app does not run
        error = {
            "type": "AgentKilled",
            "message": f"agent {info.name!r} (pid {info.pid}) was killed ({info.reason}): "
            + (info.detail or "no detail"),
        }
        status: str
        outcome: dict[str, Any]
        if info.reason == "task_timeout":
            status = "failed"
            outcome = {
                "type": "TaskTimeout",
                "message": f"task {task.id} of {task.agent!r} ran past its task_timeout of "
                f"{self.app.agent(task.agent).task_timeout:g} s while holding its agent's "
                "event loop; the node killed the process",
                "reason": info.reason,
            }
        elif task.attempts >= limit:
            status = "quarantined"
            outcome = {
                "type": "Quarantined",
                "message": f"task {task.id} killed its agent process {task.attempts} times "
                f"(quarantine_after={limit}); it will not run again until "
                f"`stalwart task retry {task.id}`",
                "reason": info.reason,
                "kills": task.attempts,
                "last_error": error,
            }
        else:
            self.events.emit(
                "task_killed_agent", severity="warning", task_id=task.id, agent=task.agent,
                reason=info.reason, attempts=task.attempts, quarantine_after=limit,
            )  # fmt: skip
            return
        await self._settle(task.id, task.agent, status, outcome)

    async def _settle(self, task_id: str, agent: str, status: str, outcome: Any) -> None:
        # The dead process's lease is fenced off by a forced claim, then the task ends.
        owner = f"{self.node_id}/{agent}"
        try:
            lease = await self.store.acquire(
                owner, self.app.lease_seconds, task_id=task_id, force=True
            )
            if lease is None:
                return
            await self.store.finish(lease, status, outcome)  # type: ignore[arg-type]
        except (StoreError, LeaseLost) as exc:
            _log.warning("poison_settle_failed", task_id=task_id, error=str(exc))
            return
        if status == "quarantined":
            catalog.TASKS_QUARANTINED.labels(agent).inc()
        catalog.TASKS_FINISHED.labels(status).inc()
        # logged at error (observe.EVENT_LEVELS): no second line needed
        self.events.emit(
            f"task_{status}", severity="error", task_id=task_id, agent=agent,
            reason=outcome.get("reason"), message=outcome.get("message"),
        )  # fmt: skip
