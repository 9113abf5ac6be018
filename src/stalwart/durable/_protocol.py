"""The store protocol: what every backend (SQLite, PostgreSQL, the in-memory fake) provides.

The protocol is async and backend-neutral. Ownership of a task is a *lease*:
an owner name, an expiry, and a fencing token that grows by one at every
acquisition. Every write on behalf of a task names the lease it holds, and the
backend applies the write only if that lease is still the task's current one, so
a runner that lost its lease (it stalled, another node took over) can never
write into the task's journal again. This is what lets many nodes share one
PostgreSQL store later without redesign (see DESIGN.md, "Scale-out").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from stalwart.observe import EventBus

__all__ = [
    "EFFECT_STATUSES",
    "EffectRecord",
    "EffectStatus",
    "Joined",
    "JournalEntry",
    "JournalLoad",
    "Lease",
    "NodeRecord",
    "QuarantinedRecord",
    "RETRYABLE",
    "RetentionMode",
    "Store",
    "TASK_STATUSES",
    "TaskQuery",
    "TaskRecord",
    "TaskStatus",
]

TaskStatus = Literal[
    "pending", "running", "awaiting_approval", "succeeded", "failed", "cancelled", "quarantined"
]
TASK_STATUSES: tuple[str, ...] = (
    "pending", "running", "awaiting_approval", "succeeded", "failed", "cancelled", "quarantined",
)  # fmt: skip
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "quarantined"})
"""Statuses a task ends in. ``quarantined``: its execution killed its agent process
``quarantine_after`` times (a poison task); it waits for ``stalwart task retry``.
``awaiting_approval`` is not one: the task is parked, and a decision resumes it."""
RETRYABLE: frozenset[str] = frozenset({"failed", "quarantined"})
"""Statuses :meth:`Store.retry` puts back to pending."""
EffectStatus = Literal["started", "completed", "failed", "unknown"]
EFFECT_STATUSES: tuple[str, ...] = ("started", "completed", "failed", "unknown")
RetentionMode = Literal["compact", "delete"]
JournalKind = Literal["step", "failed", "now", "random", "sleep", "effect", "checkpoint"]


@dataclasses.dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node of the cluster as registered: ``info`` has its address, version, pid…"""

    id: str
    info: dict[str, Any]
    started_at: float
    heartbeat_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as stored: identity, input, status, lease, and outcome once finished.

    ``outcome`` is the task's result when ``status == "succeeded"`` and an error
    description ``{"type": ..., "message": ...}`` when it failed. ``trace`` is the
    W3C ``traceparent`` of the span that created the task ("" when none): the runner
    that claims it, first or after a crash, starts the task's span under it.
    """

    id: str
    agent: str
    input: Any
    status: TaskStatus
    seed: int
    attempts: int
    lease_owner: str | None
    lease_token: int
    lease_expires: float | None
    outcome: Any
    created_at: float
    updated_at: float
    finished_at: float | None
    trace: str = ""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclasses.dataclass(frozen=True, slots=True)
class TaskQuery:
    """One listing of :meth:`Store.list_tasks_each` (the arguments of :meth:`Store.list_tasks`)."""

    status: TaskStatus | None = None
    limit: int = 100
    agent: str | None = None
    newest_first: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """Proof of ownership of a task: present it with every write.

    ``token`` is the fencing token; a write with a stale token raises
    :class:`stalwart.errors.LeaseLost` and changes nothing.

    ``fresh``: the store knows this is the task's first lease ever (no journal or
    ledger entry can exist yet, every write of one being fenced by a lease), so a
    runner need not read them. False when it cannot tell.
    """

    task_id: str
    owner: str
    token: int
    expires: float
    task: TaskRecord
    fresh: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journaled fact of a task: the ``seq``-th step, its kind, name and value."""

    seq: int
    kind: str
    name: str
    value: Any


@dataclasses.dataclass(frozen=True, slots=True)
class JournalLoad:
    """A task's usable journal plus what was quarantined while reading it."""

    entries: list[JournalEntry]
    quarantined: list[tuple[int, str]]


@dataclasses.dataclass(frozen=True, slots=True)
class EffectRecord:
    """An idempotency-ledger entry for one side-effect step.

    ``status`` is "started" (recorded before the call), "completed" (with the
    ``result``), "failed" (the call raised; ``result`` describes the error), or
    "unknown" (started, the runner died, and the effect could not safely be
    repeated).
    """

    key: str
    task_id: str
    seq: int
    name: str
    status: EffectStatus
    result: Any
    updated_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record moved aside because it failed its checks (kept, never deleted)."""

    id: int
    task_id: str
    seq: int
    kind: str
    reason: str
    record: bytes | None
    at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Joined:
    """Another component's write committed in the same transaction as a journal entry
    (:meth:`Store.append`'s ``also``): a kernel program (:mod:`stalwart.db`) and its
    arguments. The program runs after the entries; if it raises, neither commits."""

    program: Callable[..., Any]
    args: tuple[Any, ...] = ()
    lock: int | None = None
    """An advisory lock id the program must hold for its transaction (PostgreSQL: the
    lock its component's own exclusive transactions take, such as the spend ledger's),
    so it runs one at a time with them across processes and nodes."""


@runtime_checkable
class Store(Protocol):
    """Durable storage for tasks, their journals, the idempotency ledger and checkpoints.

    Every method is a coroutine with a deadline (the ``store`` timeout): none waits
    forever; a store that does not answer in time raises
    :class:`stalwart.errors.StoreUnavailable`. A write returns only once it is
    durable at the store's durability level.
    """

    @property
    def url(self) -> str:
        """Where the store lives, without credentials (for logs and reports)."""
        ...

    @property
    def durability(self) -> str:
        """The durability level in force ("full", "normal" or "off")."""
        ...

    events: EventBus
    """Where the store announces integrity events (``durable.record_quarantined``...)."""

    async def open(self) -> None:
        """Connect, check integrity, create or migrate the schema."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release connections and threads."""
        ...

    async def schema_version(self) -> int: ...

    async def probe(self, timeout: float) -> None:
        """A bounded real write, for readiness: raises StoreUnavailable unless the store
        accepts a write within ``timeout`` seconds."""
        ...

    async def create_task(
        self,
        agent: str,
        input: Any,
        *,
        task_id: str | None = None,
        seed: int | None = None,
        trace: str = "",
    ) -> TaskRecord:
        """Store a new pending task. ``input`` must be JSON data; ``seed`` feeds ``ctx.random``;
        ``trace`` is the creating span's ``traceparent``, kept with the task (at most 128
        characters: a longer value is stored as "", a malformed one starts a new trace)."""
        ...

    async def get_task(self, task_id: str) -> TaskRecord | None:
        """The task, or None if unknown. A corrupt task row raises CorruptRecord."""
        ...

    async def register_node(self, node_id: str, info: dict[str, Any]) -> None:
        """Record (or re-record) a node of the cluster, with its address, version…"""
        ...

    async def node_heartbeat(self, node_id: str) -> None:
        """Mark ``node_id`` alive now."""
        ...

    async def unregister_node(self, node_id: str) -> None:
        """Remove a node that stopped cleanly."""
        ...

    async def list_nodes(self) -> list[NodeRecord]:
        """Every registered node, by id."""
        ...

    async def list_tasks(
        self,
        *,
        status: TaskStatus | None = None,
        limit: int = 100,
        agent: str | None = None,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        """Tasks oldest first (newest first with ``newest_first``), optionally only those
        with ``status`` and/or of ``agent``."""
        ...

    async def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        """The tasks of ``task_ids`` that exist, read in one transaction (in no set order;
        an id with no task is left out)."""
        ...

    async def list_tasks_each(self, queries: Sequence[TaskQuery]) -> list[list[TaskRecord]]:
        """Several listings read in one transaction (a node's periodic sweep: one round
        trip and one transaction, not one per listing); each query's tasks apart."""
        ...

    async def count_pending_each(self, agents: Sequence[str | None]) -> list[int]:
        """:meth:`count_pending` of each of ``agents`` (None: every agent), read in one
        transaction (admission checks two limits per submit)."""
        ...

    async def count_pending(self, agent: str | None = None) -> int:
        """How many tasks wait (``pending``), of ``agent`` or of every agent (admission)."""
        ...

    async def acquire(
        self,
        owner: str,
        lease_seconds: float,
        *,
        task_id: str | None = None,
        force: bool = False,
        agent: str | None = None,
        max_running: int | None = None,
    ) -> Lease | None:
        """Lease a runnable task (pending, or running with an expired lease).

        With ``agent``, the oldest runnable task of that agent (how an agent
        process claims work: many nodes may claim at once, and no task is ever
        handed to two live owners); with ``max_running`` too, only while fewer
        than that many of the agent's tasks hold a live lease, counted across
        every node sharing the store (a cluster-wide concurrency limit). With
        ``task_id``, only that task. ``force`` takes a running task even if its
        lease has not expired (for a supervisor that knows the owner is dead);
        the fencing token still grows so the old owner cannot write. Returns None
        when nothing is runnable.
        """
        ...

    async def acquire_many(
        self,
        owner: str,
        lease_seconds: float,
        *,
        agent: str,
        limit: int,
        max_running: int | None = None,
    ) -> list[Lease]:
        """Lease up to ``limit`` (1..10,000) runnable tasks of ``agent`` in one
        transaction, oldest first: each as :meth:`acquire` with ``agent`` takes one
        (never handed to two live owners; on PostgreSQL concurrent claimers skip each
        other's rows). With ``max_running``, only as many as keep the agent's live
        leases, counted across every node, at most that many. A task whose stored input
        is damaged is failed and reported (as :meth:`acquire` does) and left out of the
        answer. An empty list when nothing is runnable."""
        ...

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> Lease:
        """Extend the lease; raises LeaseLost if it is no longer the task's lease."""
        ...

    async def heartbeat_many(
        self, leases: Sequence[Lease], lease_seconds: float
    ) -> dict[str, Lease | None]:
        """Extend many leases of one owner in one write (a runner renews all of its
        running tasks at once, so its writes do not grow with its tasks). Returns, per
        task id, the renewed lease, or None where that lease is no longer the task's
        (the caller raises LeaseLost for that task only)."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the task back (status pending) without finishing it."""
        ...

    async def finish(self, lease: Lease, status: TaskStatus, outcome: Any) -> None:
        """Record the task's end (succeeded/failed/cancelled/quarantined) and drop the lease."""
        ...

    async def retry(self, task_id: str) -> bool:
        """Put a failed or quarantined task back to pending, to run again.

        Its attempts start again from 0 and its outcome is cleared; its journal
        is kept (recorded steps replay) except a step failure recorded last,
        which would otherwise replay the same failure. Returns False (and
        changes nothing) when the task is unknown or not failed/quarantined.
        """
        ...

    async def cancel(self, task_id: str, outcome: Any) -> TaskRecord | None:
        """End a pending, running or awaiting_approval task ``cancelled`` with ``outcome``.

        The lease's expiry is dropped and its fencing token bumped in the same write
        (``lease_owner`` keeps the last owner, so its node can interrupt it), so a
        runner still working on the task gets LeaseLost at its next write and no
        claim takes it again. Returns the task as it now is (a task that had
        already finished is returned unchanged), or None if there is no such task.
        """
        ...

    async def suspend(self, lease: Lease, outcome: Any) -> None:
        """Park a running task ``awaiting_approval`` (``outcome`` says what it waits for),
        dropping its lease; raises LeaseLost if the lease is no longer current."""
        ...

    async def wake(self, task_id: str) -> bool:
        """Make an ``awaiting_approval`` task pending again; False if it was not waiting."""
        ...

    async def append(
        self,
        lease: Lease,
        entries: Sequence[JournalEntry],
        *,
        also: Joined | None = None,
        lazy: bool = False,
    ) -> Any:
        """Append journal entries; durable when this returns. Raises LeaseLost if fenced.

        A position already taken raises StoreError, unless it holds this very entry (the
        same record, byte for byte) and there is no ``also``: that is the append done, by
        an earlier attempt whose answer was lost, and it succeeds.

        ``also``: another component's write (a kernel program on this store's database)
        committed in the same transaction, after the entries: both or neither. Returns
        its program's value (None without one).

        ``lazy``: committed when this returns (a process kill cannot lose it) but made
        durable against an OS crash only by the next ordinary commit of the database,
        which follows it in the log (the database kernel's lazy write): for a record
        that is redone when lost, such as a model call's (``docs/durable.md``, *What
        ``full`` guarantees*). Ignored with ``also`` unless :meth:`joins_lazily`."""
        ...

    async def sync(self) -> None:
        """Make every commit of this store's database so far durable, as its next
        ordinary commit would (the database kernel's ``sync``: an fsync of SQLite's WAL,
        a synchronous commit on PostgreSQL; nothing at ``normal`` or ``off``). For a
        caller that wrote lazily and must have it on disk before something outside
        depends on it, without an ordinary commit of its own to carry it."""
        ...

    def joins(self, url: str) -> bool:
        """Whether a write to the database of ``url`` can join this store's transactions
        (:meth:`append`'s ``also``): the same SQLite file, or the same PostgreSQL
        database (host, port, database, user and options alike)."""
        ...

    def joins_lazily(self) -> bool:
        """Whether a joined write may ride on a lazy commit (:meth:`append`'s ``lazy``).

        Only where a lazy commit can be lost only together with the process that made
        it: SQLite (an OS crash ends both; the resumed task starts from what the file
        kept). A PostgreSQL server can lose its last asynchronous commits (a crash, a
        failover) while the writer lives on, believing them -- harmless for a record
        that is redone when lost, not for another component's bookkeeping (a budget
        settled, a reservation taken), so a joined write commits synchronously there."""
        ...

    async def load(self, task_id: str) -> tuple[JournalLoad, dict[int, EffectRecord]]:
        """:meth:`load_journal` and :meth:`load_effects` in one read (damage found: as
        each of them handles it)."""
        ...

    async def load_journal(self, task_id: str) -> JournalLoad:
        """The task's usable journal; corrupt records are quarantined, logged and counted."""
        ...

    async def load_effects(self, task_id: str) -> dict[int, EffectRecord]:
        """The task's ledger entries by journal position (corrupt ones quarantined and left out)."""
        ...

    async def effect_started(self, lease: Lease, key: str, seq: int, name: str) -> None:
        """Record, durably, that a side effect is about to be attempted."""
        ...

    async def effect_finished(
        self, lease: Lease, key: str, status: EffectStatus, result: Any, entry: JournalEntry
    ) -> None:
        """Record an effect's end and its journal entry in one atomic write."""
        ...

    async def quarantined(self, task_id: str | None = None) -> list[QuarantinedRecord]:
        """Records moved aside by integrity checks, oldest first."""
        ...

    async def purge_finished(self, before: float, mode: RetentionMode) -> int:
        """Retention: drop journals (compact) or whole tasks (delete) finished before ``before``.

        Returns how many tasks were affected.
        """
        ...
