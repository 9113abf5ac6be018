"""The durable store, written once over the database kernel (any dialect).

:class:`SQLStore` implements the :class:`~stalwart.durable.Store` protocol:
each method validates and encodes its arguments, then runs one program of
:mod:`._ops` through the kernel's :class:`~stalwart.db.Database` -- ``write``
(group commit) or ``read``. :class:`~stalwart.durable.SQLiteStore` and
:class:`~stalwart.durable.PostgresStore` only choose the kernel dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from stalwart.clock import Clock
from stalwart.db import Database
from stalwart.durable import _ops
from stalwart.durable import _sql as q
from stalwart.durable._base import (
    MAX_TRACE,
    Reporter,
    check_claim_limit,
    check_lease_seconds,
    check_max_running,
    check_task_args,
    encode_effect,
    encode_entry,
    encode_input,
    encode_outcome,
    new_seed,
    new_task_id,
    node_from_row,
    task_from_row,
)
from stalwart.durable._integrity import check_json
from stalwart.durable._protocol import (
    FINISHED,
    EffectRecord,
    EffectStatus,
    Joined,
    JournalEntry,
    JournalLoad,
    Lease,
    NodeRecord,
    QuarantinedRecord,
    RetentionMode,
    TaskQuery,
    TaskRecord,
    TaskStatus,
)
from stalwart.durable._schema import COMPONENT
from stalwart.errors import CommitUnknown, CorruptRecord, StoreError
from stalwart.observe import EventBus

__all__ = ["SQLStore"]


class SQLStore:
    """A :class:`~stalwart.durable.Store` over a kernel :class:`~stalwart.db.Database`.

    ``migrate=False`` opens for reading only: the schema must already be there
    (SchemaMissing names the URL and how to create it otherwise).
    """

    def __init__(
        self, db: Database, *, clock: Clock, events: EventBus | None, migrate: bool = True
    ) -> None:
        self._db = db
        self._clock = clock
        self._migrate = migrate and not db.readonly
        self.events = events if events is not None else EventBus()
        self._reporter = Reporter(self.url, self.events)
        self._opened = False
        self._joins: dict[str, bool] = {}  # url -> joins(url)
        # Claims and lease renewals are lazy commits (not fsynced on their own; see
        # SQLiteDatabase) where a lazy commit can be lost only with every process that
        # saw it (joins_lazily: SQLite, whose lazy commit only an OS crash loses). A lost claim then
        # leaves the task as it was before it (pending, or its old lease running out),
        # its holder gone with it; a lost renewal, an earlier expiry nobody is left to
        # miss; and nothing written after either can outlive it (one WAL, in order). On
        # PostgreSQL a server can lose its last asynchronous commits while the claimer
        # lives on, and a lost claim's token would be handed out twice: fsynced there.
        self._lazy_leases = self.joins_lazily()

    # -- identity and lifecycle -----------------------------------------------------------
    @property
    def url(self) -> str:
        return self._db.url

    @property
    def durability(self) -> str:
        return self._db.durability

    @property
    def database(self) -> Database:
        """The kernel database this store writes through (shared by other components)."""
        return self._db

    async def open(self) -> None:
        if self._opened:
            return
        await self._db.open()
        try:
            if self._migrate:
                await self._db.migrate(COMPONENT)
            else:
                await self._db.require(COMPONENT)
        except BaseException:
            await self._db.close()
            raise
        self._opened = True

    async def close(self) -> None:
        self._opened = False
        await self._db.close()

    async def probe(self, timeout: float) -> None:
        """A bounded real write: raises StoreUnavailable unless the store accepts writes
        within ``timeout`` seconds (for readiness)."""
        await self._db.probe(timeout)

    async def schema_version(self) -> int:
        return await self._db.require(COMPONENT)

    # -- tasks ----------------------------------------------------------------------------
    async def create_task(
        self,
        agent: str,
        input: Any,
        *,
        task_id: str | None = None,
        seed: int | None = None,
        trace: str = "",
    ) -> TaskRecord:
        check_task_args(agent, task_id, seed)
        tid = task_id or new_task_id()
        record = encode_input(tid, input)
        seed_ = new_seed() if seed is None else seed
        now = self._clock.time()
        trace = trace if len(trace) <= MAX_TRACE else ""
        args = (tid, agent, record, seed_, now, now, trace)
        try:
            inserted = await self._db.write(_ops.rowcount, q.INSERT_TASK, args)
        except CommitUnknown:
            # The COMMIT's answer was lost (the connection dropped, or the server ended
            # a session idle in its transaction on a starved machine): the row tells.
            # Ours has our agent, seed and creation time; absent, it did not land, and
            # one insert more is safe. Raised as before, the caller was told "nothing
            # was stored, retry later" of a task that may have been stored.
            found = await self.get_task(tid)
            if found is None:
                inserted = await self._db.write(_ops.rowcount, q.INSERT_TASK, args)
            elif (found.agent, found.seed, found.created_at) == (agent, seed_, now):
                inserted = 1
            else:
                inserted = 0
        if inserted == 0:
            raise StoreError(f"a task with id {tid!r} already exists")
        return TaskRecord(
            tid, agent, input, "pending", seed_, 0, None, 0, None, None, now, now, None, trace
        )

    async def get_task(self, task_id: str) -> TaskRecord | None:
        found = await self._db.read(_ops.rows, q.SELECT_TASK, (task_id,))
        return task_from_row(found[0]) if found else None

    async def register_node(self, node_id: str, info: dict[str, Any]) -> None:
        blob, now = msgspec.json.encode(info), self._clock.time()
        await self._db.write(_ops.rowcount, q.UPSERT_NODE, (node_id, blob, now, now))

    async def node_heartbeat(self, node_id: str) -> None:
        await self._db.write(_ops.rowcount, q.NODE_HEARTBEAT, (self._clock.time(), node_id))

    async def unregister_node(self, node_id: str) -> None:
        await self._db.write(_ops.rowcount, q.DELETE_NODE, (node_id,))

    async def list_nodes(self) -> list[NodeRecord]:
        return [node_from_row(r) for r in await self._db.read(_ops.rows, q.LIST_NODES, ())]

    async def list_tasks(
        self,
        *,
        status: TaskStatus | None = None,
        limit: int = 100,
        agent: str | None = None,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        sql, args = q.list_query(status, limit, agent, newest_first)
        return [task_from_row(r) for r in await self._db.read(_ops.rows, sql, args)]

    async def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        ids = list(dict.fromkeys(task_ids))
        if not ids:
            return []
        chunk = q.SELECT_TASKS_CHUNK
        statements = [
            (q.SELECT_TASKS.format(ids=", ".join("?" * len(part))), part)
            for part in (ids[i : i + chunk] for i in range(0, len(ids), chunk))
        ]
        return [task_from_row(r) for r in await self._db.read(_ops.rows_of_each, statements)]

    async def list_tasks_each(self, queries: Sequence[TaskQuery]) -> list[list[TaskRecord]]:
        statements = [
            q.list_query(one.status, one.limit, one.agent, one.newest_first) for one in queries
        ]
        found = await self._db.read(_ops.rows_per_statement, statements)
        return [[task_from_row(r) for r in rows] for rows in found]

    async def count_pending_each(self, agents: Sequence[str | None]) -> list[int]:
        statements = [
            (q.COUNT_PENDING, ()) if agent is None else (q.COUNT_PENDING_AGENT, (agent,))
            for agent in agents
        ]
        found = await self._db.read(_ops.rows_per_statement, statements)
        return [int(rows[0][0]) if rows else 0 for rows in found]

    async def count_pending(self, agent: str | None = None) -> int:
        if agent is None:
            found = await self._db.read(_ops.rows, q.COUNT_PENDING, ())
        else:
            found = await self._db.read(_ops.rows, q.COUNT_PENDING_AGENT, (agent,))
        return int(found[0][0])

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
        check_lease_seconds(lease_seconds)
        check_max_running(max_running)
        now = self._clock.time()
        expires = now + lease_seconds
        sql, args = q.acquire_query(
            owner, expires, now, task_id=task_id, force=force, agent=agent, max_running=max_running
        )
        capped = task_id is None and agent is not None and max_running is not None
        lock = _ops.agent_lock(agent) if capped and agent is not None else None
        row = await self._db.write(_ops.acquire, sql, args, lock=lock, lazy=self._lazy_leases)
        if row is None:
            return None
        try:
            task = task_from_row(row)
        except CorruptRecord as exc:
            await self._fail_corrupt_task(row, owner, str(exc))
            raise
        # Tokens start at 0 and every claim (and cancel) adds one; journal and ledger
        # writes are fenced by the token, so at token 1 nothing of the task is written
        # yet (a retried task keeps its token, and its journal)
        return Lease(task.id, owner, task.lease_token, expires, task, task.lease_token == 1)

    async def acquire_many(
        self,
        owner: str,
        lease_seconds: float,
        *,
        agent: str,
        limit: int,
        max_running: int | None = None,
    ) -> list[Lease]:
        check_lease_seconds(lease_seconds)
        check_max_running(max_running)
        check_claim_limit(limit)
        now = self._clock.time()
        expires = now + lease_seconds
        found = await self._db.write(
            _ops.acquire_many,
            agent,
            limit,
            (owner, expires, now),
            max_running,
            lock=_ops.agent_lock(agent) if max_running is not None else None,
            lazy=self._lazy_leases,
        )
        leases: list[Lease] = []
        for row in found:
            try:
                task = task_from_row(row)
            except CorruptRecord as exc:  # failed and reported; the others still run
                await self._fail_corrupt_task(row, owner, str(exc))
                continue
            # fresh at token 1, as a claim of one (see acquire): nothing of it to read
            leases.append(
                Lease(task.id, owner, task.lease_token, expires, task, task.lease_token == 1)
            )
        # RETURNING gives no order: oldest first, as a claim of one at a time would
        leases.sort(key=lambda lease: (lease.task.created_at, lease.task_id))
        return leases

    async def _fail_corrupt_task(self, row: Sequence[Any], owner: str, reason: str) -> None:
        tid, token = row[0], row[7]
        outcome = encode_outcome(tid, {"type": "CorruptRecord", "message": reason})
        marker = encode_input(tid, {"quarantined_input": reason})
        now = self._clock.time()
        await self._db.write(
            _ops.fail_corrupt_task,
            (tid, -1, "task", reason, row[3], now),
            ("failed", outcome, now, now, tid, owner, token),
            (marker, tid),
        )
        self._reporter.corrupt(tid, -1, "task", reason)

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> Lease:
        check_lease_seconds(lease_seconds)
        now = self._clock.time()
        expires = now + lease_seconds
        args = (expires, now, lease.task_id, lease.owner, lease.token)
        await self._db.write(_ops.fenced, lease, q.HEARTBEAT, args, lazy=self._lazy_leases)
        return Lease(lease.task_id, lease.owner, lease.token, expires, lease.task)

    async def heartbeat_many(
        self, leases: Sequence[Lease], lease_seconds: float
    ) -> dict[str, Lease | None]:
        check_lease_seconds(lease_seconds)
        now = self._clock.time()
        expires = now + lease_seconds
        # one write (one trip through the store's queue and lock) whatever the count: a
        # statement per HEARTBEAT_MANY_CHUNK leases, all in one transaction
        statements: list[tuple[str, list[Any]]] = []
        for owner in sorted({lease.owner for lease in leases}):
            own = [lease for lease in leases if lease.owner == owner]
            for start in range(0, len(own), q.HEARTBEAT_MANY_CHUNK):
                chunk = own[start : start + q.HEARTBEAT_MANY_CHUNK]
                sql = q.HEARTBEAT_MANY.format(
                    fences=" OR ".join(["(id = ? AND lease_token = ?)"] * len(chunk))
                )
                args: list[Any] = [expires, now, owner]
                for lease in chunk:
                    args += (lease.task_id, lease.token)
                statements.append((sql, args))
        found = await self._db.write(_ops.rows_of_each, statements, lazy=self._lazy_leases)
        renewed = {str(row[0]) for row in found}
        return {
            lease.task_id: (
                Lease(lease.task_id, lease.owner, lease.token, expires, lease.task)
                if lease.task_id in renewed
                else None
            )
            for lease in leases
        }

    async def release(self, lease: Lease) -> None:
        args = (self._clock.time(), lease.task_id, lease.owner, lease.token)
        await self._db.write(_ops.fenced, lease, q.RELEASE, args)

    async def finish(self, lease: Lease, status: TaskStatus, outcome: Any) -> None:
        if status not in FINISHED:
            raise StoreError(f"finish: status must be one of {sorted(FINISHED)}, not {status!r}")
        record = encode_outcome(lease.task_id, outcome)
        now = self._clock.time()
        args = (status, record, now, now, lease.task_id, lease.owner, lease.token)
        await self._db.write(_ops.fenced, lease, q.FINISH, args)

    async def cancel(self, task_id: str, outcome: Any) -> TaskRecord | None:
        record = encode_outcome(task_id, outcome)
        found = await self._db.write(_ops.cancel, task_id, record, self._clock.time())
        return task_from_row(found[0]) if found else None

    async def suspend(self, lease: Lease, outcome: Any) -> None:
        record = encode_outcome(lease.task_id, outcome)
        args = (record, self._clock.time(), lease.task_id, lease.owner, lease.token)
        await self._db.write(_ops.fenced, lease, q.SUSPEND, args)

    async def wake(self, task_id: str) -> bool:
        changed = await self._db.write(_ops.rowcount, q.WAKE, (self._clock.time(), task_id))
        return changed > 0

    async def retry(self, task_id: str) -> bool:
        return await self._db.write(_ops.retry, task_id, self._clock.time())

    # -- journal --------------------------------------------------------------------------
    async def append(
        self,
        lease: Lease,
        entries: Sequence[JournalEntry],
        *,
        also: Joined | None = None,
        lazy: bool = False,
    ) -> Any:
        fence = (lease.task_id, lease.owner, lease.token)
        rows = [
            (lease.task_id, e.seq, e.kind, e.name, encode_entry(lease.task_id, e), *fence)
            for e in entries
        ]
        if also is None:
            if len(rows) == 1:
                # a step's record: a one-write program, which PostgreSQL commits alone
                return await self._db.write(_ops.append_one, lease, rows[0], lazy=lazy)
            return await self._db.write(_ops.append, lease, rows, None, lazy=lazy)
        if not self.joins_own():
            raise StoreError(f"store {self.url}: a read-only store takes no joined write")
        lazy = lazy and self.joins_lazily()  # see Store.joins_lazily
        return await self._db.write(_ops.append, lease, rows, also, lazy=lazy, lock=also.lock)

    async def sync(self) -> None:
        await self._db.sync()

    def joins_own(self) -> bool:
        """Whether this store's transactions can take another component's program: any
        writable store (on SQLite every write of the file goes through one writer thread
        and one connection; on PostgreSQL a program runs on the store's pooled connection
        as any of the store's own, its lock taken with the batch's)."""
        return not self._db.readonly

    def joins_lazily(self) -> bool:
        return self._db.dialect == "sqlite"

    def joins(self, url: str) -> bool:
        found = self._joins.get(url)
        if found is None:
            found = self.joins_own() and self._db.holds(url)
            if len(self._joins) < 64:
                self._joins[url] = found
        return found

    async def load(self, task_id: str) -> tuple[JournalLoad, dict[int, EffectRecord]]:
        # Read alone first: only damaged records need a write (then each loader does it).
        (load, moves), (found, bad) = await self._db.read(_ops.load_task, task_id)
        if moves:
            load = await self.load_journal(task_id)
        if bad:
            found = await self.load_effects(task_id)
        return load, found

    async def load_journal(self, task_id: str) -> JournalLoad:
        # Read alone first: only a journal with damaged records needs a write.
        load, moves = await self._db.read(_ops.load_journal, task_id, None)
        if moves:
            load, moves = await self._db.write(_ops.load_journal, task_id, self._clock.time())
            for row, reason in moves:
                self._reporter.corrupt(task_id, row.seq, row.kind, reason)
        return load

    # -- ledger ---------------------------------------------------------------------------
    async def load_effects(self, task_id: str) -> dict[int, EffectRecord]:
        found, bad = await self._db.read(_ops.load_effects, task_id, None)
        if bad:
            found, bad = await self._db.write(_ops.load_effects, task_id, self._clock.time())
            for seq, reason in bad:
                self._reporter.corrupt(task_id, seq, "effect", reason)
        return found

    async def effect_started(self, lease: Lease, key: str, seq: int, name: str) -> None:
        fence = (lease.task_id, lease.owner, lease.token)
        args = (key, lease.task_id, seq, name, self._clock.time(), *fence)
        await self._db.write(_ops.effect_started, lease, args)

    async def effect_finished(
        self, lease: Lease, key: str, status: EffectStatus, result: Any, entry: JournalEntry
    ) -> None:
        check_json(result, f"result of side effect {key!r}")
        record = encode_effect(lease.task_id, entry.seq, result)
        fence = (lease.task_id, lease.owner, lease.token)
        finish_args = (status, record, self._clock.time(), key, *fence)
        row = (
            lease.task_id,
            entry.seq,
            entry.kind,
            entry.name,
            encode_entry(lease.task_id, entry),
            *fence,
        )
        await self._db.write(_ops.effect_finished, lease, key, finish_args, row)

    # -- integrity and retention ----------------------------------------------------------
    async def quarantined(self, task_id: str | None = None) -> list[QuarantinedRecord]:
        sql = q.LIST_QUARANTINE + (" WHERE task_id = ?" if task_id is not None else "")
        args: tuple[Any, ...] = (task_id,) if task_id is not None else ()
        found = await self._db.read(_ops.rows, sql + " ORDER BY id", args)
        return [
            QuarantinedRecord(int(i), t, int(s), k, r, None if b is None else bytes(b), a)
            for i, t, s, k, r, b, a in found
        ]

    async def purge_finished(self, before: float, mode: RetentionMode) -> int:
        if mode not in ("compact", "delete"):
            raise StoreError(f"retention mode must be 'compact' or 'delete', not {mode!r}")
        return await self._db.write(_ops.purge, before, mode)
