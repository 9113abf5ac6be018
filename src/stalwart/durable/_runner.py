"""Running tasks under leases: acquire, heartbeat, replay, finish.

A :class:`Runner` owns tasks only through leases. While a task runs, a
heartbeat renews its lease every third of ``lease_seconds`` (all of a runner's
leases in one write per tick: see ``_renewal``); if the renewal is
refused (another runner took the task after the lease expired), the work is
cancelled at once and :class:`~stalwart.errors.LeaseLost` is raised: two runners
never both write a task's journal (the store fences every write anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.durable._base import check_lease_seconds
from stalwart.durable._integrity import check_json
from stalwart.durable._journal import Context
from stalwart.durable._ops import lease_lost
from stalwart.durable._protocol import EffectRecord, JournalLoad, Lease, Store, TaskRecord
from stalwart.durable._renewal import Renewals
from stalwart.errors import (
    IncompatibleFormat,
    InvalidMessage,
    LeaseLost,
    StalwartError,
    StoreError,
    TaskSuspended,
)
from stalwart.guard import seal
from stalwart.observe import EventBus, get_logger

__all__ = ["Runner", "TaskResult", "Workflow"]

Workflow = Callable[[Context, Any], Awaitable[Any]]
_log = get_logger("stalwart.durable.runner")
TRACEBACK_CHARS = 8000
"""Longest traceback a failed task's outcome keeps (the innermost frames)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TaskResult:
    """How a run of a task ended.

    ``result`` is the workflow's return value when ``status == "succeeded"``, and
    ``{"type": ..., "message": ...}`` when it failed. ``replayed_steps`` and
    ``executed_steps`` count this attempt's journal hits and real executions.
    ``stored`` is the task's end as the store now holds it, ``(status, outcome)`` (the
    outcome sealed: secrets as references), when this run wrote it or found it there;
    None otherwise (parked, cancelled, given back).
    """

    task_id: str
    status: str
    result: Any
    attempts: int
    replayed_steps: int = 0
    executed_steps: int = 0
    quarantined: tuple[tuple[int, str], ...] = ()
    stored: tuple[str, Any] | None = None


def default_owner() -> str:
    """A lease-owner name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Runner:
    """Runs workflows durably against a :class:`~stalwart.durable.Store`.

    ``owner`` names this runner in leases (default: host:pid:random).
    ``lease_seconds`` is how long a lease lasts without a heartbeat (default 30):
    after a crash, another runner can resume the task once it expires.
    ``clock`` drives ``ctx.now``, ``ctx.sleep`` and the heartbeat.
    """

    def __init__(
        self,
        store: Store,
        *,
        owner: str | None = None,
        lease_seconds: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
        events: EventBus | None = None,
        redact: Callable[[str], str] | None = None,
        transient_attempts: int = 5,
    ) -> None:
        """``redact``: applied to a failed task's traceback before it is stored (the
        agent layer passes the guard's redactor); None stores it as formatted.
        ``transient_attempts``: attempts of a task that ends in a retryable error other
        than the store's before it fails with that error (each attempt is a claim)."""
        check_lease_seconds(lease_seconds)
        self.redact = redact
        self.store = store
        self.owner = owner or default_owner()
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.events: EventBus = events if events is not None else store.events
        self.renewals = Renewals(store, clock, lease_seconds)
        if transient_attempts < 1:
            raise ValueError("transient_attempts must be at least 1")
        self.transient_attempts = transient_attempts

    async def submit(
        self,
        agent: str,
        input: Any,
        *,
        task_id: str | None = None,
        seed: int | None = None,
        trace: str = "",
    ) -> str:
        """Create a pending task; returns its id. ``trace``: see :meth:`Store.create_task`."""
        task = await self.store.create_task(agent, input, task_id=task_id, seed=seed, trace=trace)
        return task.id

    async def run(self, task_id: str, workflow: Workflow, *, force: bool = False) -> TaskResult:
        """Run (or resume) ``task_id`` to its end; a finished task returns its stored outcome.

        A task that parks (a held tool call under durable approvals) returns status
        ``awaiting_approval``; one cancelled while it runs returns ``cancelled``.

        ``force`` takes the task even if another owner's lease has not expired --
        only for a supervisor that knows that owner is dead.
        """
        # Claimed first, read only when the claim fails: a task to run costs one
        # transaction here, not two (a finished one is never claimed; a damaged one is
        # quarantined, failed and raised by acquire()).
        claimed_at = self.clock.monotonic()
        lease = await self.store.acquire(
            self.owner, self.renewals.asking, task_id=task_id, force=force
        )
        if lease is None:
            task = await self.store.get_task(task_id)
            if task is None:
                raise StoreError(f"no task with id {task_id!r} in {self.store.url}")
            if task.finished:
                return _stored(task)
            raise LeaseLost(
                f"task {task_id!r} is leased by {task.lease_owner if task else None!r} until "
                f"{task.lease_expires if task else None}; it can be resumed after that"
            )
        return await self.execute(lease, workflow, claimed_at=claimed_at)

    async def run_next(self, workflows: Mapping[str, Workflow]) -> TaskResult | None:
        """Lease the oldest runnable task and run it; None if there is none.

        A task whose agent is not in ``workflows`` is released untouched.
        """
        claimed_at = self.clock.monotonic()
        lease = await self.store.acquire(self.owner, self.lease_seconds)
        if lease is None:
            return None
        workflow = workflows.get(lease.task.agent)
        if workflow is None:
            await self.store.release(lease)
            raise StoreError(
                f"task {lease.task_id!r} is for agent {lease.task.agent!r}, which this runner "
                f"does not know (known: {sorted(workflows)})"
            )
        return await self.execute(lease, workflow, claimed_at=claimed_at)

    async def execute(
        self, lease: Lease, workflow: Workflow, *, claimed_at: float | None = None
    ) -> TaskResult:
        """Run ``workflow`` under an acquired ``lease`` and record its end.

        ``claimed_at``: when the claim that took ``lease`` was sent, on this runner's
        monotonic clock (None: now). The lease counts from then (its store wrote it a
        little later), so a task that starts long after its claim renews at once.
        """
        granted = min(self.renewals.max_seconds, lease.expires - lease.task.updated_at)
        expires_at = (self.clock.monotonic() if claimed_at is None else claimed_at) + granted
        journal: JournalLoad
        effects: dict[int, EffectRecord]
        try:
            if lease.fresh:  # a first lease: nothing to read (one transaction fewer a task)
                journal, effects = JournalLoad([], []), {}
            else:
                journal, effects = await self.store.load(lease.task_id)  # one read, not two
        except (IncompatibleFormat, asyncio.CancelledError):
            # a newer node wrote part of it, or we are stopping: give the task back
            await self._release_quietly(lease)
            raise
        ctx = Context(self.store, lease, journal, effects, clock=self.clock, events=self.events)
        work = asyncio.ensure_future(workflow(ctx, lease.task.input))
        beat = asyncio.ensure_future(self._heartbeat(ctx, work, expires_at, granted))
        try:
            try:
                result = await work
            except asyncio.CancelledError:
                if beat.done() and isinstance(beat.exception(), LeaseLost):
                    raise beat.exception() from None  # type: ignore[misc]
                raise
            except Exception as exc:
                # A write of this run failed and the task's code caught it, then failed
                # otherwise: the store's failure is the cause, and it decides (the task
                # is given back, not failed for what its code made of it)
                if ctx.broken is not None and exc is not ctx.broken:
                    raise ctx.broken from exc
                raise
            ctx.check_complete()  # first: a run whose write failed does not finish
            check_json(result, f"result of task {lease.task_id!r}")
        except TaskSuspended as held:
            return await self._suspend(ctx, held)
        except LeaseLost:
            if await self._was_cancelled(lease.task_id):
                return _cancelled(ctx)
            raise
        except asyncio.CancelledError:
            await self._release_quietly(ctx.lease)
            raise
        except StalwartError as exc:
            # The store failing is the runtime's trouble, never the task's: give it back
            # however often. Any other transient error that escaped the task's own retries
            # is given back too, but only ``transient_attempts`` times in all: past that
            # the task fails with it (it was released and claimed again at once, a loop
            # with no end, before)
            transient = exc.retryable == "retryable" and not isinstance(exc, InvalidMessage)
            if transient and (
                isinstance(exc, StoreError) or lease.task.attempts < self.transient_attempts
            ):
                await self._release_quietly(ctx.lease)
                raise
            return await self._fail(ctx, exc)
        except Exception as exc:
            return await self._fail(ctx, exc)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLost, StalwartError):
                await beat
        sealed = seal(result)  # secrets as references
        await self.store.finish(ctx.lease, "succeeded", sealed)
        return TaskResult(
            lease.task_id,
            "succeeded",
            result,
            lease.task.attempts,
            ctx.replayed_steps,
            ctx.executed_steps,
            tuple(ctx.quarantined),
            ("succeeded", sealed),
        )

    async def _suspend(self, ctx: Context, held: TaskSuspended) -> TaskResult:
        """Park the task ``awaiting_approval``: no lease, nothing running it (see Store.suspend)."""
        try:
            check_json(held.waiting, f"what task {ctx.task_id!r} waits for")
            await self.store.suspend(ctx.lease, seal(held.waiting))
        except LeaseLost:
            if await self._was_cancelled(ctx.task_id):
                return _cancelled(ctx)
            raise
        _log.info("durable_task_suspended", task_id=ctx.task_id, **held.waiting)
        return TaskResult(
            ctx.task_id,
            "awaiting_approval",
            held.waiting,
            ctx.attempt,
            ctx.replayed_steps,
            ctx.executed_steps,
            tuple(ctx.quarantined),
        )

    async def _was_cancelled(self, task_id: str) -> bool:
        """After a refused write: was it because the task was cancelled (not taken over)?"""
        try:
            async with asyncio.timeout(self.lease_seconds / 3):
                task = await self.store.get_task(task_id)
        except (StalwartError, TimeoutError):
            return False
        return task is not None and task.status == "cancelled"

    async def _fail(self, ctx: Context, exc: BaseException) -> TaskResult:
        outcome = {"type": type(exc).__name__, "message": str(exc)}
        _log.warning("durable_task_failed", task_id=ctx.task_id, **outcome)
        outcome["traceback"] = self._traceback(exc)
        sealed = seal(outcome)
        await self.store.finish(ctx.lease, "failed", sealed)
        return TaskResult(
            ctx.task_id,
            "failed",
            outcome,
            ctx.attempt,
            ctx.replayed_steps,
            ctx.executed_steps,
            tuple(ctx.quarantined),
            ("failed", sealed),
        )

    def _traceback(self, exc: BaseException) -> str:
        """The failure's traceback (redacted, at most ``TRACEBACK_CHARS``: its end kept)."""
        text = "".join(traceback.format_exception(exc))
        if self.redact is not None:
            text = self.redact(text)
        if len(text) > TRACEBACK_CHARS:
            text = "...\n" + text[-TRACEBACK_CHARS:]
        return text

    async def _heartbeat(
        self, ctx: Context, work: asyncio.Future[Any], expires_at: float, granted: float
    ) -> None:
        """Renew the lease every third of it; give the task up before the lease can expire.

        A runner that cannot renew (store unreachable, partitioned, paused) must
        stop working on the task *before* another runner may take it over: once
        the lease has less than a third of ``lease_seconds`` left (two thirds after
        the last renewal was sent), the work is cancelled and :class:`LeaseLost`
        raised, leaving that third as the margin. (The store's fencing rejects any
        write of a stale owner anyway; this keeps a cut-off runner from even trying.)

        The lease is counted from its claim (``expires_at``, on the monotonic clock),
        not from when this heartbeat began: a task claimed in a burst on a busy process may start
        a second or more after its claim, and a heartbeat that counted from its own
        start believed in a lease that had already run out (issue 19: the agent's
        own claim loop then took the task again, fencing the runner mid-step). A
        heartbeat that finds itself behind (less than two thirds of the lease left)
        renews at once instead of waiting for the shared tick.
        """
        interval = self.lease_seconds / 3
        failed = False
        while not work.done():
            margin = granted / 3  # of the lease held now (a busy runner asks for longer)
            ahead = expires_at - self.clock.monotonic() - 2 * margin
            if ahead > 0 or failed:
                # the shared tick; after a failure, no later than the give-up moment,
                # which still gets its one short try
                wait = self.renewals.until_next_tick()
                if failed:
                    wait = min(wait, max(0.0, ahead + margin))
                await self.clock.sleep(wait)
            else:
                await asyncio.sleep(0)  # behind: renew now (with whoever else is)
            if work.done():
                return
            sent_at = self.clock.monotonic()
            # Bounded by the time left before giving up. Past it (this process was paused,
            # or the clock jumped) one short try still counts: if the renewal goes through,
            # nobody took the task meanwhile (the lease token is unchanged), so going on
            # is safe.
            left = expires_at - margin - sent_at
            try:
                renewed, seconds = await self.renewals.renew_for(
                    ctx.lease, left if left > 0 else min(interval, 2.0)
                )
                if renewed is None:
                    raise lease_lost(ctx.lease)
                ctx.set_lease(renewed)
                failed = False
                # the store counts the new lease (perhaps shorter than the last one: a
                # runner no longer busy asks for less) from its write, after ``sent_at``
                expires_at, granted = sent_at + seconds, seconds
            except LeaseLost:
                _log.error("durable_lease_lost", task_id=ctx.task_id, owner=self.owner)
                self.events.emit("durable.lease_lost", task_id=ctx.task_id, owner=self.owner)
                work.cancel()
                raise
            except (StalwartError, TimeoutError) as exc:  # store hiccup: retry, up to a limit
                failed = True
                if self.clock.monotonic() < expires_at - margin:
                    _log.warning("durable_heartbeat_failed", task_id=ctx.task_id, error=str(exc))
                    continue
                _log.error("durable_lease_abandoned", task_id=ctx.task_id, owner=self.owner)
                self.events.emit(
                    "durable.lease_abandoned",
                    task_id=ctx.task_id,
                    owner=self.owner,
                    error=repr(exc),
                )
                work.cancel()
                raise LeaseLost(
                    f"task {ctx.task_id!r}: the lease could not be renewed in time ({exc!r}); "
                    f"the work stopped before the lease could expire (a third of it, "
                    f"{margin:.3g} s, left), so another runner can take the task over safely"
                ) from exc

    async def _release_quietly(self, lease: Lease) -> None:
        try:
            await asyncio.shield(self.store.release(lease))
        except (StalwartError, asyncio.CancelledError) as exc:
            _log.warning("durable_release_failed", task_id=lease.task_id, error=str(exc))


def _cancelled(ctx: Context) -> TaskResult:
    _log.info("durable_task_cancelled", task_id=ctx.task_id)
    return TaskResult(
        ctx.task_id,
        "cancelled",
        None,
        ctx.attempt,
        ctx.replayed_steps,
        ctx.executed_steps,
        tuple(ctx.quarantined),
    )


def _stored(task: TaskRecord) -> TaskResult:
    return TaskResult(
        task.id, task.status, task.outcome, task.attempts, stored=(task.status, task.outcome)
    )
