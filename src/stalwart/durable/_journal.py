"""The step context: ``ctx.step``, ``ctx.now``, ``ctx.random``, ``ctx.sleep``, checkpoints, replay.

Every call takes the next position (``seq``) in the task's journal. If the
journal already holds a record there, the call is a *replay*: the recorded value
is returned and nothing runs. Otherwise the call runs, its value is committed
(durably) and only then returned. A record whose kind or name differs from the
call at the same position means the code no longer matches the journal:
:class:`~stalwart.errors.NonDeterminismError`, never a silently wrong value.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random as _random
from collections.abc import Callable, Iterator
from typing import Any

from stalwart.clock import Clock
from stalwart.durable import _metrics
from stalwart.durable._integrity import check_json
from stalwart.durable._protocol import (
    EffectRecord,
    Joined,
    JournalEntry,
    JournalLoad,
    Lease,
    Store,
)
from stalwart.errors import InvalidMessage, NonDeterminismError, StepFailed, StoreError
from stalwart.guard import seal, unseal
from stalwart.observe import EventBus

__all__ = ["Context"]

_REPLAYED = {
    k: _metrics.STEPS.labels(kind=k, replayed="true")
    for k in ("step", "failed", "now", "random", "sleep", "effect", "checkpoint")
}
_EXECUTED = {k: _metrics.STEPS.labels(kind=k, replayed="false") for k in _REPLAYED}


class Context:
    """What a durable task function receives: journaled steps over one leased task.

    Created by :class:`~stalwart.durable.Runner`; do not build one by hand.
    ``replayed_steps`` and ``executed_steps`` count this attempt's calls that came
    from the journal and that really ran (a resumed task must re-run none of the
    recorded ones).
    """

    def __init__(
        self,
        store: Store,
        lease: Lease,
        journal: JournalLoad,
        effects: dict[int, EffectRecord],
        *,
        clock: Clock,
        events: EventBus,
    ) -> None:
        self._store = store
        self._lease = lease
        self._entries = {e.seq: e for e in journal.entries}
        self._last = max(self._entries, default=-1)
        self._effects = effects
        self._clock = clock
        self.events = events
        self._seq = 0
        self._lazy_commits = 0  # lazy commits this run made
        self._synced_lazy = 0  # of them, those an ordinary commit of this run followed
        self.replayed_steps = 0
        self.executed_steps = 0
        self.quarantined = list(journal.quarantined)
        self.broken: StoreError | None = None
        """The write of this run that failed, if one did (see :meth:`writing`)."""
        self.unknown_effects: list[tuple[str, str]] = []
        """(step name, idempotency key) of each side effect this run found with an
        unknown outcome (started, never recorded, not repeated): what the task's
        result must say it cannot vouch for."""

    # -- facts about the task ---------------------------------------------------------
    @property
    def task_id(self) -> str:
        return self._lease.task_id

    @property
    def agent(self) -> str:
        return self._lease.task.agent

    @property
    def input(self) -> Any:
        return self._lease.task.input

    @property
    def attempt(self) -> int:
        """1 for the first run of the task, 2 after one resume, and so on."""
        return self._lease.task.attempts

    @property
    def replaying(self) -> bool:
        """True while the next call will be answered from the journal."""
        return self._seq <= self._last

    @property
    def position(self) -> int:
        """The journal position the next call will take."""
        return self._seq

    def committed(self, *, lazy: bool) -> None:
        """Note a commit of this task's (a journal record, a ledger entry): an ordinary
        one makes every earlier lazy one durable (one log, fsynced up to its end)."""
        if lazy:
            self._lazy_commits += 1
        else:
            self._synced_lazy = self._lazy_commits

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Wrap each store write of this run: a write that fails breaks the run for good.

        After a failed write nobody knows whether it reached the store (a timeout) or
        not (a full disk), so the journal positions after it cannot be trusted: every
        later call of this run raises the same error at once, and so does the end of
        the task, whatever the task's code made of the first raise. Code that catches
        the store's error and goes on (a framework turning a tool's exception into a
        message for the model; a broad ``except Exception``) cannot make the task
        finish on a record it never wrote: the runner gives the task back, and the
        journal decides what ran when it resumes.
        """
        try:
            yield
        except StoreError as exc:
            if self.broken is None:
                self.broken = exc
            raise

    def check_sound(self) -> None:
        """Raise the store error that broke this run, if a write of it failed."""
        if self.broken is not None:
            raise self.broken

    @property
    def lazy_mark(self) -> int:
        """The number of this run's lazy commits so far: pass it to :meth:`synced` later."""
        return self._lazy_commits

    def synced(self, mark: int) -> bool:
        """Whether an ordinary commit of this task came after its ``mark``-th lazy commit,
        making it durable at ``full``."""
        return self._synced_lazy >= mark

    async def sync(self) -> None:
        """Make this run's lazy commits so far durable without an ordinary commit of its
        own (:meth:`Store.sync`): :meth:`synced` then holds for every mark taken before
        this was called."""
        mark = self._lazy_commits
        await self._store.sync()
        self._synced_lazy = max(self._synced_lazy, mark)

    def set_lease(self, lease: Lease) -> None:
        """Adopt a renewed lease (same token) from the heartbeat."""
        self._lease = lease

    # -- the journal cursor -----------------------------------------------------------
    def _next(self, kind: str, name: str) -> tuple[int, JournalEntry | None]:
        self.check_sound()
        seq = self._seq
        self._seq += 1
        entry = self._entries.get(seq)
        if entry is not None and entry.kind == "failed" and kind == "step":
            kind = "failed"  # a step whose function raised: the failure is its record
        if entry is not None and (entry.kind != kind or entry.name != name):
            raise NonDeterminismError(
                f"task {self.task_id!r}, journal position {seq}: the code now calls "
                f"{kind} {name!r} but the journal recorded {entry.kind} {entry.name!r}. "
                "The task's code changed in a way that breaks replay (a step renamed, "
                "added, removed or reordered); finish old tasks on the old code, or give "
                "the changed step a new name only for new tasks"
            )
        if entry is not None:
            self.replayed_steps += 1
            _REPLAYED[kind].inc()
            # a recorded value holds secret://name where the step returned a resolved
            # secret: the replay gets the secret's current value back (guard._sealed)
            entry = JournalEntry(entry.seq, entry.kind, entry.name, unseal(entry.value))
        return seq, entry

    async def _record(
        self,
        seq: int,
        kind: str,
        name: str,
        value: Any,
        also: Joined | None = None,
        *,
        lazy: bool = False,
    ) -> Any:
        # A write of this run failed while the step's function ran (a nested step, a tool
        # call's ledger entry): the function's outcome, even a "failed" record of the
        # store's error it raised again, would be written after a position nobody can
        # trust, and a failed record replays as a permanent StepFailed. Nothing is written.
        self.check_sound()
        # a resolved secret is stored as its reference, never as the value
        entry = JournalEntry(seq, kind, name, seal(value))
        with self.writing():
            if also is None and not lazy:
                await self._store.append(self._lease, (entry,))
                joined = None
            else:
                joined = await self._store.append(self._lease, (entry,), also=also, lazy=lazy)
            # a joined write commits synchronously where the database could lose a lazy
            # commit while this process lives on (Store.joins_lazily)
            lazy = lazy and (also is None or self._store.joins_lazily())
        self.committed(lazy=lazy)
        self.executed_steps += 1
        _EXECUTED[kind].inc()
        return joined

    # -- the public calls ------------------------------------------------------------
    async def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once per task, journaling its result.

        ``fn`` may be sync or async; its result must be JSON data (see
        :func:`check_json`). On replay the recorded result is returned and ``fn``
        does not run. A sync ``fn`` runs on the event loop: keep it short, or pass
        an async function (e.g. wrap blocking code with ``asyncio.to_thread``).

        If ``fn`` raises an ``Exception``, the failure (type name and text) is
        journaled and :class:`~stalwart.errors.StepFailed` is raised, with the
        original as ``__cause__``; a replay raises the same ``StepFailed``, so code
        that handles it takes the same path after a resume. Retry transient
        failures *inside* ``fn`` (``stalwart.resilience``) so only the final
        outcome is recorded.
        """
        value, _joined = await self._step(name, fn, args, kwargs, None)
        return value

    async def step_joined(
        self,
        name: str,
        fn: Callable[[], Any],
        join: Callable[[Any], Joined | None] | None,
        *,
        redone_if_lost: bool = False,
    ) -> tuple[Any, Any]:
        """:meth:`step`, with another component's write committed in the same transaction
        as the step's journal entry: ``join(result)`` gives it (or None) once ``fn``
        succeeded; ``join`` None joins nothing (a plain step, for ``redone_if_lost``).
        Returns ``(result, the joined program's value)``; the value is None on replay,
        when ``join`` gave nothing, and when the store cannot join writes
        (:meth:`Store.joins`: the caller checks first and writes on its own otherwise).

        For bookkeeping that belongs to the step (the agent settles a model call's spend
        with the call's entry): one commit instead of two, and never one without the
        other.

        ``redone_if_lost``: the step's record (and the joined write) is a lazy commit --
        a process kill cannot lose it, but at ``full`` durability it is flushed to disk
        by the next ordinary commit of the store, not on its own. An OS crash or power
        loss before that commit loses it, and the resumed task runs ``fn`` again, as
        after a crash just before it; nothing committed after it can outlive it (one
        log, written in order). For a step that may run twice but must not be paid an
        fsync for each time (a model call: ``docs/durable.md``, *What ``full``
        guarantees*). A step with a joined write commits as an ordinary one where the
        store does not join lazily (:meth:`Store.joins_lazily`: PostgreSQL)."""
        return await self._step(name, fn, (), {}, join, lazy=redone_if_lost)

    async def _step(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        join: Callable[[Any], Joined | None] | None,
        *,
        lazy: bool = False,
    ) -> tuple[Any, Any]:
        _check_name(name)
        seq, entry = self._next("step", name)
        if entry is not None:
            if entry.kind == "failed":
                raise step_failed(name, entry.value)
            return entry.value, None
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            error = describe(exc)
            await self._record(seq, "failed", name, error, lazy=lazy)
            raise step_failed(name, error) from exc
        check_json(result, f"result of step {name!r} (task {self.task_id!r}, #{seq})")
        also = join(result) if join is not None else None
        return result, await self._record(seq, "step", name, result, also, lazy=lazy)

    async def now(self) -> float:
        """Wall time (seconds since the epoch), journaled: replay returns the recorded time.

        The record is a lazy commit, as a model call's is (:meth:`step_joined`'s
        ``redone_if_lost``): a process kill cannot lose it; an OS crash before the store's
        next ordinary commit can, together with everything after it, and the resumed task
        reads the clock again, as after a crash just before the call. Nothing committed
        after it can outlive it, so no side effect, sub-task or result can depend on a
        time that was lost."""
        seq, entry = self._next("now", "now")
        if entry is not None:
            return float(entry.value)
        value = self._clock.time()
        await self._record(seq, "now", "now", value, lazy=True)
        return value

    async def random(self) -> float:
        """A float in [0, 1), journaled.

        Drawn from the task's seed and position, so even a step re-executed after
        journal damage draws the same number. Not for secrets: use the
        ``secrets`` module inside a step for those. The record is a lazy commit (see
        :meth:`now`): a record lost to an OS crash is drawn again, the same.
        """
        seq, entry = self._next("random", "random")
        if entry is not None:
            return float(entry.value)
        value = _random.Random(f"{self._lease.task.seed}:{seq}").random()
        await self._record(seq, "random", "random", value, lazy=True)
        return value

    async def sleep(self, seconds: float) -> None:
        """Sleep durably: the wake-up time is journaled, so a resumed task sleeps only the rest."""
        if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
            raise InvalidMessage(
                f"ctx.sleep: seconds must be a finite number >= 0, got {seconds!r}"
            )
        seq, entry = self._next("sleep", "sleep")
        if entry is not None:
            until = float(entry.value)
        else:
            until = self._clock.time() + seconds
            await self._record(seq, "sleep", "sleep", until)
        remaining = until - self._clock.time()
        if remaining > 0:
            await self._clock.sleep(remaining)

    async def checkpoint(self, state: Any) -> None:
        """Journal a snapshot of the task's state; a resume can start from it (``restore``).

        If journal records after a checkpoint are damaged, the task resumes from
        the last good checkpoint instead of from the beginning.
        """
        seq, entry = self._next("checkpoint", "checkpoint")
        if entry is not None:
            return
        check_json(state, f"checkpoint state of task {self.task_id!r} (#{seq})")
        await self._record(seq, "checkpoint", "checkpoint", state)

    def restore(self) -> Any:
        """The state of the task's last checkpoint, moving the cursor just past it.

        Call it first, before any step; returns None when there is no checkpoint
        yet (a fresh task), in which case the task starts from the beginning.
        """
        if self._seq != 0:
            raise StoreError("ctx.restore() must be called before any other ctx call")
        points = [e for e in self._entries.values() if e.kind == "checkpoint"]
        if not points:
            return None
        last = max(points, key=lambda e: e.seq)
        self._seq = last.seq + 1
        return unseal(last.value)

    async def effect(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        deduplicated: bool,
        reconcile: Callable[[str], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run a side effect at most once -- or exactly once when the service deduplicates.

        ``fn`` is called as ``fn(*args, idempotency_key=key, **kwargs)``; ``key`` is
        derived from (task, step) and is the same on every attempt. Set
        ``deduplicated=True`` only if the service ignores a repeated key (payment
        APIs with an Idempotency-Key header do). See ``docs/durable.md``.
        """
        from stalwart.durable._ledger import run_effect

        _check_name(name)
        seq, entry = self._next("effect", name)
        return await run_effect(
            self,
            seq=seq,
            name=name,
            entry=entry,
            fn=fn,
            args=args,
            kwargs=kwargs,
            deduplicated=deduplicated,
            reconcile=reconcile,
        )

    def check_complete(self) -> None:
        """Raise the store error that broke this run, if one did (:meth:`writing`);
        NonDeterminismError if the journal holds records the code never reached."""
        self.check_sound()
        if self._seq <= self._last:
            raise NonDeterminismError(
                f"task {self.task_id!r} finished after {self._seq} journal positions but the "
                f"journal has records up to #{self._last}: the code now takes fewer steps "
                "than when the task was recorded"
            )

    # -- used by the ledger ---------------------------------------------------------
    @property
    def lease(self) -> Lease:
        return self._lease

    @property
    def store(self) -> Store:
        return self._store

    def effect_record(self, seq: int) -> EffectRecord | None:
        return self._effects.get(seq)

    def count_executed(self, kind: str) -> None:
        self.executed_steps += 1
        _EXECUTED[kind].inc()


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise InvalidMessage(f"step name must be a str of 1..200 characters, got {name!r}")


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a sync or async function and return its (awaited) result."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def describe(exc: BaseException) -> dict[str, str]:
    """A JSON description of an exception, as journaled for a failed step."""
    cls = type(exc)
    return {"type": f"{cls.__module__}.{cls.__qualname__}", "message": str(exc)[:4000]}


def step_failed(name: str, error: Any) -> StepFailed:
    """The StepFailed raised for a failed step, first run and replay alike."""
    kind = str(error.get("type", "?")) if isinstance(error, dict) else "?"
    text = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    return StepFailed(
        f"step {name!r} failed: {kind}: {text}", step=name, error_type=kind, error_message=text
    )
