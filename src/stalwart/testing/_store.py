"""An in-memory :class:`stalwart.durable.Store` for users' tests.

Same semantics as the real backends (leases and fencing, journal, ledger,
checksummed records, quarantine, retention) and it passes the same contract
suite, but nothing survives the process. Records are kept encoded, exactly as a
backend stores them, so integrity checks behave the same; ``damage()`` lets a
test corrupt one on purpose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.durable._base import (
    Reporter,
    check_durability,
    check_lease_seconds,
    check_max_running,
    check_task_args,
    effect_from_row,
    encode_effect,
    encode_entry,
    encode_input,
    encode_outcome,
    new_seed,
    new_task_id,
    plan_load,
    task_from_row,
)
from stalwart.durable._integrity import FORMAT_VERSION, RawRow, check_json
from stalwart.durable._protocol import (
    FINISHED,
    EffectRecord,
    EffectStatus,
    JournalEntry,
    JournalLoad,
    Lease,
    NodeRecord,
    QuarantinedRecord,
    RetentionMode,
    TaskRecord,
    TaskStatus,
)
from stalwart.durable._schema import SCHEMA_VERSION
from stalwart.errors import CorruptRecord, LeaseLost, StoreError
from stalwart.observe import EventBus

__all__ = ["MemoryStore"]


@dataclasses.dataclass(slots=True)
class _Task:
    id: str
    agent: str
    status: str
    input: bytes | None
    seed: int
    attempts: int
    lease_owner: str | None
    lease_token: int
    lease_expires: float | None
    outcome: bytes | None
    created_at: float
    updated_at: float
    finished_at: float | None
    needs_format: int = 1  # not part of the row: see the SQL stores' schema v3

    def row(self) -> tuple[Any, ...]:
        return dataclasses.astuple(self)[:-1]


class MemoryStore:
    """A process-local Store. ``clock`` drives lease expiry and timestamps."""

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: EventBus | None = None,
        durability: str = "full",
    ) -> None:
        self._clock = clock
        self._durability = check_durability(durability)
        self.events = events if events is not None else EventBus()
        self._reporter = Reporter(self.url, self.events)
        self._tasks: dict[str, _Task] = {}
        self._nodes: dict[str, NodeRecord] = {}
        self._journal: dict[str, dict[int, tuple[str, str, bytes | None]]] = {}
        self._effects: dict[str, list[Any]] = {}
        self._quarantine: list[QuarantinedRecord] = []
        self._open = False
        self._order = 0

    @property
    def url(self) -> str:
        return "memory://"

    @property
    def durability(self) -> str:
        return self._durability

    async def __aenter__(self) -> MemoryStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise StoreError("memory store is not open; call `await store.open()`")

    async def schema_version(self) -> int:
        self._check_open()
        return SCHEMA_VERSION

    # -- tasks ---------------------------------------------------------------------------
    async def create_task(
        self, agent: str, input: Any, *, task_id: str | None = None, seed: int | None = None
    ) -> TaskRecord:
        self._check_open()
        check_task_args(agent, task_id, seed)
        tid = task_id or new_task_id()
        record = encode_input(tid, input)
        if tid in self._tasks:
            raise StoreError(f"a task with id {tid!r} already exists")
        now = self._clock.time()
        # Creation order breaks created_at ties, like (created_at, id) in SQL.
        self._order += 1
        task = _Task(
            tid,
            agent,
            "pending",
            record,
            new_seed() if seed is None else seed,
            0,
            None,
            0,
            None,
            None,
            now,
            now,
            None,
        )
        self._tasks[tid] = task
        return task_from_row(task.row())

    async def get_task(self, task_id: str) -> TaskRecord | None:
        self._check_open()
        task = self._tasks.get(task_id)
        return None if task is None else task_from_row(task.row())

    async def register_node(self, node_id: str, info: dict[str, Any]) -> None:
        self._check_open()
        now = self._clock.time()
        self._nodes[node_id] = NodeRecord(node_id, dict(info), now, now)

    async def node_heartbeat(self, node_id: str) -> None:
        self._check_open()
        node = self._nodes.get(node_id)
        if node is not None:
            self._nodes[node_id] = dataclasses.replace(node, heartbeat_at=self._clock.time())

    async def unregister_node(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    async def list_nodes(self) -> list[NodeRecord]:
        self._check_open()
        return [self._nodes[k] for k in sorted(self._nodes)]

    async def list_tasks(
        self,
        *,
        status: TaskStatus | None = None,
        limit: int = 100,
        agent: str | None = None,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        self._check_open()
        tasks = sorted(
            self._tasks.values(), key=lambda t: (t.created_at, t.id), reverse=newest_first
        )
        return [
            task_from_row(t.row())
            for t in tasks
            if (status is None or t.status == status) and (agent is None or t.agent == agent)
        ][:limit]

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
        self._check_open()
        check_lease_seconds(lease_seconds)
        check_max_running(max_running)
        now = self._clock.time()
        if task_id is None and agent is not None and max_running is not None:
            live = sum(
                1
                for t in self._tasks.values()
                if t.agent == agent
                and t.status == "running"
                and t.lease_expires is not None
                and t.lease_expires >= now
            )
            if live >= max_running:
                return None

        def runnable(t: _Task) -> bool:
            if t.needs_format > FORMAT_VERSION:
                return False  # touched by a newer stalwart: leave it to a node that can
            if force and task_id is not None:
                return t.status in ("pending", "running")
            return t.status == "pending" or (
                t.status == "running" and t.lease_expires is not None and t.lease_expires < now
            )

        if task_id is not None:
            found = self._tasks.get(task_id)
            candidates = [found] if found is not None else []
        else:
            candidates = sorted(
                (t for t in self._tasks.values() if agent is None or t.agent == agent),
                key=lambda t: (t.created_at, t.id),
            )
        task = next((t for t in candidates if runnable(t)), None)
        if task is None:
            return None
        task.status, task.lease_owner = "running", owner
        task.needs_format = max(task.needs_format, FORMAT_VERSION)
        task.lease_token += 1
        task.lease_expires = now + lease_seconds
        task.attempts += 1
        task.updated_at = now
        try:
            record = task_from_row(task.row())
        except CorruptRecord as exc:
            self._quarantine_add(task.id, -1, "task", str(exc), task.input)
            task.status, task.outcome = (
                "failed",
                encode_outcome(task.id, {"type": "CorruptRecord", "message": str(exc)}),
            )
            task.input = encode_input(task.id, {"quarantined_input": str(exc)})
            task.lease_owner = task.lease_expires = None
            task.finished_at = now
            raise
        return Lease(task.id, owner, task.lease_token, now + lease_seconds, record)

    def _fenced(self, lease: Lease) -> _Task:
        task = self._tasks.get(lease.task_id)
        if task is None or (task.lease_owner, task.lease_token, task.status) != (
            lease.owner,
            lease.token,
            "running",
        ):
            raise LeaseLost(
                f"task {lease.task_id!r}: lease token {lease.token} of {lease.owner!r} is no "
                "longer current"
            )
        return task

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> Lease:
        self._check_open()
        check_lease_seconds(lease_seconds)
        task = self._fenced(lease)
        now = self._clock.time()
        task.lease_expires, task.updated_at = now + lease_seconds, now
        return Lease(lease.task_id, lease.owner, lease.token, now + lease_seconds, lease.task)

    async def release(self, lease: Lease) -> None:
        self._check_open()
        task = self._fenced(lease)
        task.status, task.lease_owner, task.lease_expires = "pending", None, None
        task.updated_at = self._clock.time()

    async def finish(self, lease: Lease, status: TaskStatus, outcome: Any) -> None:
        self._check_open()
        if status not in FINISHED:
            raise StoreError(
                f"finish: status must be succeeded, failed or cancelled, not {status!r}"
            )
        record = encode_outcome(lease.task_id, outcome)
        task = self._fenced(lease)
        now = self._clock.time()
        task.status, task.outcome = status, record
        task.lease_owner = task.lease_expires = None
        task.updated_at = task.finished_at = now

    async def cancel(self, task_id: str, outcome: Any) -> TaskRecord | None:
        self._check_open()
        task = self._tasks.get(task_id)
        if task is None:
            return None
        if task.status in ("pending", "running", "awaiting_approval"):
            now = self._clock.time()
            task.status, task.outcome = "cancelled", encode_outcome(task_id, outcome)
            task.lease_expires = None  # lease_owner keeps the last owner (see the SQL stores)
            task.lease_token += 1
            task.updated_at = task.finished_at = now
        return await self.get_task(task_id)

    async def suspend(self, lease: Lease, outcome: Any) -> None:
        self._check_open()
        record = encode_outcome(lease.task_id, outcome)
        task = self._fenced(lease)
        task.status, task.outcome = "awaiting_approval", record
        task.lease_owner = task.lease_expires = None
        task.updated_at = self._clock.time()

    async def wake(self, task_id: str) -> bool:
        self._check_open()
        task = self._tasks.get(task_id)
        if task is None or task.status != "awaiting_approval":
            return False
        task.status, task.outcome, task.updated_at = "pending", None, self._clock.time()
        return True

    # -- journal --------------------------------------------------------------------------
    async def append(self, lease: Lease, entries: Sequence[JournalEntry]) -> None:
        self._check_open()
        records = [(e, encode_entry(lease.task_id, e)) for e in entries]
        self._fenced(lease)
        journal = self._journal.setdefault(lease.task_id, {})
        for entry, record in records:
            if entry.seq in journal:
                raise StoreError(
                    f"task {lease.task_id!r}: journal already has a record #{entry.seq}"
                )
            journal[entry.seq] = (entry.kind, entry.name, record)

    async def load_journal(self, task_id: str) -> JournalLoad:
        self._check_open()
        journal = self._journal.get(task_id, {})
        rows = [RawRow(s, k, n, r) for s, (k, n, r) in sorted(journal.items())]
        load, moves = plan_load(task_id, rows)
        for row, reason in moves:
            self._quarantine_add(task_id, row.seq, row.kind, reason, row.record)
            del journal[row.seq]
            self._reporter.corrupt(task_id, row.seq, row.kind, reason)
        return load

    def damage(self, task_id: str, seq: int, record: bytes | None) -> None:
        """Replace a journal record's bytes (for corruption tests)."""
        kind, name, _ = self._journal[task_id][seq]
        self._journal[task_id][seq] = (kind, name, record)

    def raw_record(self, task_id: str, seq: int) -> bytes | None:
        """A journal record's stored bytes (for corruption tests)."""
        return self._journal[task_id][seq][2]

    def _quarantine_add(
        self, task_id: str, seq: int, kind: str, reason: str, record: bytes | None
    ) -> None:
        self._quarantine.append(
            QuarantinedRecord(
                len(self._quarantine) + 1, task_id, seq, kind, reason, record, self._clock.time()
            )
        )

    # -- ledger ---------------------------------------------------------------------------
    async def load_effects(self, task_id: str) -> dict[int, EffectRecord]:
        self._check_open()
        found: dict[int, EffectRecord] = {}
        for key, row in self._effects.items():
            if row[0] != task_id:
                continue
            try:
                rec = effect_from_row((key, *row))
            except CorruptRecord as exc:
                self._quarantine_add(task_id, row[1], "effect", str(exc), row[4])
                row[3], row[4] = "started", None
                rec = EffectRecord(key, task_id, row[1], row[2], "started", None, row[5])
                self._reporter.corrupt(task_id, row[1], "effect", str(exc))
            found[rec.seq] = rec
        return found

    async def effect_started(self, lease: Lease, key: str, seq: int, name: str) -> None:
        self._check_open()
        self._fenced(lease)
        self._effects.setdefault(
            key, [lease.task_id, seq, name, "started", None, self._clock.time()]
        )

    async def effect_finished(
        self, lease: Lease, key: str, status: EffectStatus, result: Any, entry: JournalEntry
    ) -> None:
        self._check_open()
        check_json(result, f"result of side effect {key!r}")
        record = encode_effect(lease.task_id, entry.seq, result)
        self._fenced(lease)
        row = self._effects.get(key)
        if row is None:
            raise StoreError(f"ledger has no started entry {key!r}")
        await self.append(lease, (entry,))
        row[3], row[4], row[5] = status, record, self._clock.time()

    # -- integrity and retention ----------------------------------------------------------
    async def quarantined(self, task_id: str | None = None) -> list[QuarantinedRecord]:
        self._check_open()
        return [q for q in self._quarantine if task_id is None or q.task_id == task_id]

    async def purge_finished(self, before: float, mode: RetentionMode) -> int:
        self._check_open()
        if mode not in ("compact", "delete"):
            raise StoreError(f"retention mode must be 'compact' or 'delete', not {mode!r}")
        count = 0
        for task in list(self._tasks.values()):
            if task.status not in FINISHED or task.finished_at is None:
                continue
            if task.finished_at >= before:
                continue
            had = bool(self._journal.pop(task.id, None))
            for key in [k for k, r in self._effects.items() if r[0] == task.id]:
                del self._effects[key]
                had = True
            if mode == "delete":
                del self._tasks[task.id]
                had = True
            count += 1 if had else 0
        return count
