"""The PostgreSQL backend: psycopg 3, a connection pool, group commit, leases for many nodes.

Writes from all tasks of this process go to one queue; a small number of
flusher coroutines (``flushers``, default 2) each take everything queued, run it
in one transaction on a pooled connection, and commit once -- so concurrent
tasks share commits, and while one batch commits the next one fills. Reads use
the pool directly. Runnable tasks are claimed with ``FOR UPDATE SKIP LOCKED``,
so many nodes can lease from one database without blocking each other.

Durability: "full" keeps ``synchronous_commit = on`` (a commit is on disk, on the
primary, before it is acknowledged); "normal" and "off" set it off for this
store's sessions (a server crash may lose the last commits; never corrupts).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.config import Timeouts
from stalwart.durable import _metrics
from stalwart.durable import _sql as q
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
    node_from_row,
    plan_load,
    task_from_row,
)
from stalwart.durable._integrity import RawRow, check_json
from stalwart.durable._protocol import (
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
from stalwart.durable._schema import SCHEMA_VERSION, migrations
from stalwart.durable._sql import acquire_query, list_query
from stalwart.errors import ConfigError, CorruptRecord, LeaseLost, StoreError, StoreUnavailable
from stalwart.observe import EventBus, get_logger

__all__ = ["PostgresStore"]

Conn = psycopg.AsyncConnection[Any]
Op = Callable[[Conn], Awaitable[Any]]
_log = get_logger("stalwart.durable.postgres")
_MIGRATION_LOCK = 0x5354414C  # advisory lock id: one migrator at a time across nodes
S = {name: q.pg(getattr(q, name)) for name in dir(q) if name.isupper()}
_PG_QUERIES = types.SimpleNamespace(**S)


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class PostgresStore:
    """A :class:`~stalwart.durable.Store` in a PostgreSQL database.

    ``url`` is a libpq URL (``postgresql://user:pass@host:5432/db``); the password
    never appears in logs (``url`` property is redacted). ``pool_size`` bounds the
    connections; ``flushers`` is the number of concurrent group commits.
    """

    def __init__(
        self,
        url: str,
        *,
        durability: str = "full",
        clock: Clock = SYSTEM_CLOCK,
        timeout: float | None = None,
        events: EventBus | None = None,
        pool_size: int = 8,
        flushers: int = 2,
        max_batch: int = 512,
        idle_in_transaction_timeout: float = 2.0,
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"PostgresStore url must start with postgresql://, got {_redact(url)!r}"
            )
        if not 2 <= pool_size <= 200 or not 1 <= flushers < pool_size:
            raise ConfigError(
                f"PostgresStore pool_size = {pool_size} must be in 2..200 and flushers = "
                f"{flushers} in 1..pool_size-1 (reads need a free connection)"
            )
        self.url_with_credentials = url
        self._url = _redact(url)
        self._durability = check_durability(durability)
        self._clock = clock
        self._timeout = Timeouts(store=timeout).store if timeout is not None else Timeouts().store
        self.events = events if events is not None else EventBus()
        self._reporter = Reporter(self._url, self.events)
        self._pool_size = pool_size
        self._flushers_n = flushers
        if not isinstance(max_batch, int) or not 1 <= max_batch <= 10_000:
            raise ConfigError(f"max_batch = {max_batch!r} must be an int in 1..10000")
        self._max_batch = max_batch
        if not 0.1 <= idle_in_transaction_timeout <= 600:
            raise ConfigError(
                f"idle_in_transaction_timeout = {idle_in_transaction_timeout!r} must be in "
                "0.1..600 s (keep it below the lease: a silent writer blocks takeovers)"
            )
        self._idle_tx_timeout = idle_in_transaction_timeout
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._wake: asyncio.Event | None = None
        self._flushers: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def url(self) -> str:
        return self._url

    @property
    def durability(self) -> str:
        return self._durability

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle ------------------------------------------------------------------------
    async def _configure(self, conn: Conn) -> None:
        sync = "on" if self._durability == "full" else "off"
        await conn.execute(f"SET synchronous_commit = {sync}")
        await conn.execute(f"SET statement_timeout = {int(self._timeout * 1000)}")
        # A client that goes silent inside a transaction (partitioned, paused) would hold
        # its fence's row lock and block the takeover of its tasks: end such sessions.
        await conn.execute(
            f"SET idle_in_transaction_session_timeout = {int(self._idle_tx_timeout * 1000)}"
        )
        await conn.commit()

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.url_with_credentials,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            timeout=self._timeout,
            configure=self._configure,
            kwargs={"connect_timeout": max(1, int(self._timeout))},
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except Exception as exc:
            await pool.close()
            raise StoreUnavailable(f"PostgreSQL store {self._url} is unreachable: {exc}") from exc
        self._pool = pool
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise
        self._closing = False
        self._wake = asyncio.Event()
        self._flushers = [
            asyncio.create_task(self._flusher(), name=f"stalwart-pg-flusher-{i}")
            for i in range(self._flushers_n)
        ]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._flushers:
            _done, pending = await asyncio.wait(self._flushers, timeout=self._timeout)
            for task in pending:
                task.cancel()
        self._flushers = []
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(StoreError(f"PostgreSQL store {self._url} is closed"))
        self._queue.clear()
        await pool.close(timeout=self._timeout)

    async def _migrate(self) -> None:
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            version = await _read_version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL store {self._url} has schema version {version}, newer than "
                    f"this stalwart supports ({SCHEMA_VERSION}); upgrade stalwart"
                )
            for step in migrations("postgres")[version:]:
                for stmt in step:
                    await conn.execute(stmt)
            if version < SCHEMA_VERSION:
                await conn.execute(S["SET_META"], (str(SCHEMA_VERSION),))

    @contextlib.asynccontextmanager
    async def _conn(self) -> Any:
        pool = self._pool
        if pool is None:
            raise StoreError(f"PostgreSQL store {self._url} is not open; call `await store.open()`")
        try:
            async with pool.connection(timeout=self._timeout) as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL store {self._url}: {exc}") from exc
        except PoolTimeout as exc:
            raise StoreUnavailable(f"PostgreSQL store {self._url}: {exc}") from exc

    # -- group commit ---------------------------------------------------------------------
    async def _write(self, op: Op) -> Any:
        if self._pool is None or self._wake is None:
            raise StoreError(f"PostgreSQL store {self._url} is not open; call `await store.open()`")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, fut))
        self._wake.set()
        try:
            async with asyncio.timeout(self._timeout):
                return await fut
        except TimeoutError:
            raise StoreUnavailable(
                f"PostgreSQL store {self._url} did not commit within {self._timeout:g} s"
            ) from None

    async def _flusher(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            if self._queue:
                self._wake.set()  # let another flusher start on the rest
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
        started = time.perf_counter()
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            async with self._conn() as conn, conn.transaction():
                for op, fut in batch:
                    try:
                        results.append((fut, True, await op(conn)))
                    except (LeaseLost, StoreError, CorruptRecord) as exc:
                        # Raised by our own checks after statements that changed nothing.
                        results.append((fut, False, exc))
        except psycopg.Error as exc:
            err = StoreUnavailable(f"PostgreSQL store {self._url}: commit failed: {exc}")
            results = [(fut, False, err) for _, fut in batch]
        except StoreError as exc:
            results = [(fut, False, exc) for _, fut in batch]
        _metrics.COMMIT_BATCH.observe(len(batch))
        _metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        for fut, ok, value in results:
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    async def _read(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with asyncio.timeout(self._timeout), self._conn() as conn:
                cur = await conn.execute(sql, args)
                rows: list[tuple[Any, ...]] = await cur.fetchall()
                await conn.commit()
                return rows
        except TimeoutError:
            raise StoreUnavailable(
                f"PostgreSQL store {self._url} did not answer within {self._timeout:g} s"
            ) from None
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL store {self._url}: {exc}") from exc

    # -- tasks -----------------------------------------------------------------------------
    async def schema_version(self) -> int:
        async with self._conn() as conn:
            version = await _read_version(conn)
            await conn.commit()
            return version

    async def create_task(
        self, agent: str, input: Any, *, task_id: str | None = None, seed: int | None = None
    ) -> TaskRecord:
        check_task_args(agent, task_id, seed)
        tid = task_id or new_task_id()
        record = encode_input(tid, input)
        seed_ = new_seed() if seed is None else seed
        now = self._clock.time()

        async def op(conn: Conn) -> int:
            cur = await conn.execute(S["INSERT_TASK"], (tid, agent, record, seed_, now, now))
            return cur.rowcount

        if await self._write(op) == 0:
            raise StoreError(f"a task with id {tid!r} already exists")
        return TaskRecord(
            tid, agent, input, "pending", seed_, 0, None, 0, None, None, now, now, None
        )

    async def get_task(self, task_id: str) -> TaskRecord | None:
        rows = await self._read(S["SELECT_TASK"], (task_id,))
        return task_from_row(rows[0]) if rows else None

    async def register_node(self, node_id: str, info: dict[str, Any]) -> None:
        blob, now = msgspec.json.encode(info), self._clock.time()

        async def op(conn: Conn) -> None:
            await conn.execute(S["UPSERT_NODE"], (node_id, blob, now, now))

        await self._write(op)

    async def node_heartbeat(self, node_id: str) -> None:
        now = self._clock.time()

        async def op(conn: Conn) -> None:
            await conn.execute(S["NODE_HEARTBEAT"], (now, node_id))

        await self._write(op)

    async def unregister_node(self, node_id: str) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(S["DELETE_NODE"], (node_id,))

        await self._write(op)

    async def list_nodes(self) -> list[NodeRecord]:
        return [node_from_row(r) for r in await self._read(S["LIST_NODES"], ())]

    async def list_tasks(
        self,
        *,
        status: TaskStatus | None = None,
        limit: int = 100,
        agent: str | None = None,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        sql, args = list_query(_PG_QUERIES, status, limit, agent, newest_first)
        rows = await self._read(sql, args)
        return [task_from_row(r) for r in rows]

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
        now = self._clock.time()
        expires = now + lease_seconds
        check_max_running(max_running)
        sql, args = acquire_query(
            _PG_QUERIES, " FOR UPDATE SKIP LOCKED", owner, expires, now,
            task_id=task_id, force=force, agent=agent, max_running=max_running,
        )  # fmt: skip
        # A capped claim first serializes counting-and-claiming per agent across the
        # cluster; the lock ends with the (group) commit that publishes the claim.
        capped = task_id is None and agent is not None and max_running is not None

        async def op(conn: Conn) -> Any:
            if capped:
                await conn.execute(S["AGENT_LOCK"], (f"stalwart:agent:{agent}",))
            cur = await conn.execute(sql, args)
            return await cur.fetchone()

        row = await self._write(op)
        if row is None:
            return None
        try:
            task = task_from_row(row)
        except CorruptRecord as exc:
            await self._fail_corrupt_task(row, owner, str(exc))
            raise
        return Lease(task.id, owner, task.lease_token, expires, task)

    async def _fail_corrupt_task(self, row: Sequence[Any], owner: str, reason: str) -> None:
        tid, token = row[0], row[7]
        now = self._clock.time()
        outcome = encode_outcome(tid, {"type": "CorruptRecord", "message": reason})
        # The damaged input moves to quarantine; the row keeps a readable marker so
        # the task can still be listed and shows why it failed.
        marker = encode_input(tid, {"quarantined_input": reason})

        async def op(conn: Conn) -> None:
            await conn.execute(S["QUARANTINE"], (tid, -1, "task", reason, row[3], now))
            await conn.execute(S["FINISH"], ("failed", outcome, now, now, tid, owner, token))
            await conn.execute("UPDATE stalwart_tasks SET input = %s WHERE id = %s", (marker, tid))

        await self._write(op)
        self._reporter.corrupt(tid, -1, "task", reason)

    async def _fenced_update(self, lease: Lease, sql: str, args: tuple[Any, ...]) -> None:
        async def op(conn: Conn) -> int:
            return (await conn.execute(sql, args)).rowcount

        if await self._write(op) == 0:
            raise _lease_lost(lease)

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> Lease:
        check_lease_seconds(lease_seconds)
        now = self._clock.time()
        expires = now + lease_seconds
        await self._fenced_update(
            lease, S["HEARTBEAT"], (expires, now, lease.task_id, lease.owner, lease.token)
        )
        return Lease(lease.task_id, lease.owner, lease.token, expires, lease.task)

    async def release(self, lease: Lease) -> None:
        await self._fenced_update(
            lease, S["RELEASE"], (self._clock.time(), lease.task_id, lease.owner, lease.token)
        )

    async def finish(self, lease: Lease, status: TaskStatus, outcome: Any) -> None:
        if status not in ("succeeded", "failed", "cancelled"):
            raise StoreError(
                f"finish: status must be succeeded, failed or cancelled, not {status!r}"
            )
        record = encode_outcome(lease.task_id, outcome)
        now = self._clock.time()
        await self._fenced_update(
            lease, S["FINISH"], (status, record, now, now, lease.task_id, lease.owner, lease.token)
        )

    async def cancel(self, task_id: str, outcome: Any) -> TaskRecord | None:
        record = encode_outcome(task_id, outcome)
        now = self._clock.time()

        async def op(conn: Conn) -> Any:
            await conn.execute(S["CANCEL"], (record, now, now, task_id))
            return await (await conn.execute(S["SELECT_TASK"], (task_id,))).fetchone()

        row = await self._write(op)
        return None if row is None else task_from_row(row)

    async def suspend(self, lease: Lease, outcome: Any) -> None:
        record = encode_outcome(lease.task_id, outcome)
        await self._fenced_update(
            lease,
            S["SUSPEND"],
            (record, self._clock.time(), lease.task_id, lease.owner, lease.token),
        )

    async def wake(self, task_id: str) -> bool:
        async def op(conn: Conn) -> int:
            return (await conn.execute(S["WAKE"], (self._clock.time(), task_id))).rowcount

        return bool(await self._write(op))

    # -- journal ----------------------------------------------------------------------------
    async def append(self, lease: Lease, entries: Sequence[JournalEntry]) -> None:
        fence = (lease.task_id, lease.owner, lease.token)
        rows = [
            (lease.task_id, e.seq, e.kind, e.name, encode_entry(lease.task_id, e), *fence)
            for e in entries
        ]

        async def op(conn: Conn) -> None:
            for row in rows:
                if (await conn.execute(S["APPEND"], row)).rowcount == 0:
                    await _explain_refusal(conn, lease, row[1])

        await self._write(op)

    async def load_journal(self, task_id: str) -> JournalLoad:
        rows = [
            RawRow(int(s), k, n, None if r is None else bytes(r))
            for s, k, n, r in await self._read(S["LOAD_JOURNAL"], (task_id,))
        ]
        load, moves = plan_load(task_id, rows)
        if moves:
            now = self._clock.time()

            async def op(conn: Conn) -> None:
                for row, reason in moves:
                    await conn.execute(
                        S["QUARANTINE"], (task_id, row.seq, row.kind, reason, row.record, now)
                    )
                    await conn.execute(S["DELETE_ENTRY"], (task_id, row.seq))

            await self._write(op)
            for row, reason in moves:
                self._reporter.corrupt(task_id, row.seq, row.kind, reason)
        return load

    # -- ledger -----------------------------------------------------------------------------
    async def load_effects(self, task_id: str) -> dict[int, EffectRecord]:
        found: dict[int, EffectRecord] = {}
        bad: list[tuple[Any, ...]] = []
        for row in await self._read(S["LOAD_EFFECTS"], (task_id,)):
            try:
                rec = effect_from_row(row)
            except CorruptRecord as exc:
                bad.append((*row, str(exc)))
                rec = EffectRecord(row[0], task_id, int(row[2]), row[3], "started", None, row[6])
            found[rec.seq] = rec
        if bad:
            now = self._clock.time()

            async def op(conn: Conn) -> None:
                for key, _, seq, _, _, record, _, reason in bad:
                    await conn.execute(
                        S["QUARANTINE"], (task_id, seq, "effect", reason, record, now)
                    )
                    await conn.execute(
                        "UPDATE stalwart_effects SET status = 'started', record = NULL "
                        "WHERE key = %s",
                        (key,),
                    )

            await self._write(op)
            for row in bad:
                self._reporter.corrupt(task_id, int(row[2]), "effect", row[-1])
        return found

    async def effect_started(self, lease: Lease, key: str, seq: int, name: str) -> None:
        args = (
            key,
            lease.task_id,
            seq,
            name,
            self._clock.time(),
            lease.task_id,
            lease.owner,
            lease.token,
        )

        async def op(conn: Conn) -> None:
            if (await conn.execute(S["EFFECT_START"], args)).rowcount == 0:
                await _check_fence(conn, lease)

        await self._write(op)

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

        async def op(conn: Conn) -> None:
            if (await conn.execute(S["EFFECT_FINISH"], finish_args)).rowcount == 0:
                await _check_fence(conn, lease)
                raise StoreError(f"ledger has no started entry {key!r}")
            if (await conn.execute(S["APPEND"], row)).rowcount == 0:
                await _explain_refusal(conn, lease, entry.seq)

        await self._write(op)

    # -- integrity and retention ------------------------------------------------------------------
    async def quarantined(self, task_id: str | None = None) -> list[QuarantinedRecord]:
        sql = S["LIST_QUARANTINE"]
        args: tuple[Any, ...] = ()
        if task_id is not None:
            sql, args = sql + " WHERE task_id = %s", (task_id,)
        rows = await self._read(sql + " ORDER BY id", args)
        return [
            QuarantinedRecord(int(i), t, int(s), k, r, None if b is None else bytes(b), a)
            for i, t, s, k, r, b, a in rows
        ]

    async def purge_finished(self, before: float, mode: RetentionMode) -> int:
        if mode not in ("compact", "delete"):
            raise StoreError(f"retention mode must be 'compact' or 'delete', not {mode!r}")

        async def op(conn: Conn) -> int:
            cur = await conn.execute(S["PURGE_SELECT"], (before, 10_000))
            ids = [r[0] for r in await cur.fetchall()]
            count = 0
            for tid in ids:
                had = (await conn.execute(S["PURGE_JOURNAL"], (tid,))).rowcount
                had += (await conn.execute(S["PURGE_EFFECTS"], (tid,))).rowcount
                if mode == "delete":
                    had += (await conn.execute(S["PURGE_TASK"], (tid,))).rowcount
                count += 1 if had else 0
            return count

        count: int = await self._write(op)
        return count


async def _read_version(conn: Conn) -> int:
    cur = await conn.execute("SELECT to_regclass('stalwart_meta') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute(S["GET_META"])
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


def _lease_lost(lease: Lease) -> LeaseLost:
    _metrics.LEASES_LOST.inc()
    return LeaseLost(
        f"task {lease.task_id!r}: lease token {lease.token} of {lease.owner!r} is no longer "
        "current (expired and taken over, released, or the task finished)"
    )


async def _check_fence(conn: Conn, lease: Lease) -> None:
    cur = await conn.execute(
        "SELECT lease_owner, lease_token, status FROM stalwart_tasks WHERE id = %s",
        (lease.task_id,),
    )
    row = await cur.fetchone()
    if row is None or tuple(row) != (lease.owner, lease.token, "running"):
        raise _lease_lost(lease)


async def _explain_refusal(conn: Conn, lease: Lease, seq: int) -> None:
    await _check_fence(conn, lease)
    raise StoreError(f"task {lease.task_id!r}: journal already has a record #{seq}")
