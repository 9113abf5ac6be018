"""The SQLite backend: the embedded default. WAL mode, configurable durability, group commit.

Durability levels (``PRAGMA synchronous`` in WAL mode):

- ``full`` (default): every commit is fsynced; a committed step survives a
  process kill *and* a power loss or OS crash.
- ``normal``: commits reach the OS but the WAL is fsynced only at checkpoints; a
  committed step survives a process kill (SIGKILL, OOM), a power loss may lose
  the last commits (never corrupts the file).
- ``off``: no fsync at all; for tests and throwaway runs.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

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
from stalwart.durable._sqlite_writer import Job, Writer, map_sqlite_error
from stalwart.errors import ConfigError, CorruptRecord, LeaseLost, StoreError, StoreUnavailable
from stalwart.observe import EventBus, get_logger

__all__ = ["SQLiteStore"]

T = TypeVar("T")
_log = get_logger("stalwart.durable.sqlite")
_SYNC = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}
_DAMAGE_WORDS = ("not a database", "malformed", "corrupt", "quick_check failed", "encrypted")


class SQLiteStore:
    """A :class:`~stalwart.durable.Store` in one SQLite file.

    ``durability`` is "full" (default), "normal" or "off" (see the module doc).
    ``timeout`` bounds every operation (default: the ``store`` timeout, 10 s).
    ``check_on_open`` runs ``PRAGMA quick_check`` at open; a file that fails it,
    or is not a database at all, is moved aside to ``<name>.corrupt-<time>``
    (never deleted) and a fresh store is created in its place.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "full",
        clock: Clock = SYSTEM_CLOCK,
        timeout: float | None = None,
        events: EventBus | None = None,
        check_on_open: bool = True,
        max_batch: int = 512,
        wal_autocheckpoint: int = 200,
    ) -> None:
        self._path = pathlib.Path(path)
        self._durability = check_durability(durability)
        self._clock = clock
        self._timeout = Timeouts(store=timeout).store if timeout is not None else Timeouts().store
        self.events = events if events is not None else EventBus()
        self._check_on_open = check_on_open
        if not isinstance(max_batch, int) or not 1 <= max_batch <= 10_000:
            raise ConfigError(f"max_batch = {max_batch!r} must be an int in 1..10000")
        self._max_batch = max_batch
        if not isinstance(wal_autocheckpoint, int) or not 10 <= wal_autocheckpoint <= 100_000:
            raise ConfigError(
                f"wal_autocheckpoint = {wal_autocheckpoint!r} must be an int in 10..100000 pages"
            )
        self._wal_autocheckpoint = wal_autocheckpoint
        self._writer: Writer | None = None
        self._reporter = Reporter(self.url, self.events)
        self.quarantined_file: pathlib.Path | None = None
        """Where a corrupt file found at open was moved, if one was."""

    # -- identity ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"sqlite:///{self._path}"

    @property
    def durability(self) -> str:
        return self._durability

    @property
    def path(self) -> pathlib.Path:
        return self._path

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle --------------------------------------------------------------------
    async def open(self) -> None:
        if self._writer is not None:
            return
        writer = Writer(self._open_connection, str(self._path), self._max_batch)
        writer.start()
        ready = await self._wait_thread_event(writer.ready, "open")
        if not ready:
            writer.stop()
            raise StoreUnavailable(
                f"SQLite store {self._path} did not open within {self._timeout:g} s"
            )
        if writer.startup_error is not None:
            err = writer.startup_error
            if isinstance(err, sqlite3.Error):
                raise map_sqlite_error(err, str(self._path)) from err
            if isinstance(err, OSError):
                raise StoreUnavailable(f"SQLite store {self._path}: {err}") from err
            raise err
        self._writer = writer
        if self.quarantined_file is not None:
            _metrics.STORE_FILES_QUARANTINED.inc()
            self.events.emit(
                "durable.store_file_quarantined",
                store=self.url,
                moved_to=str(self.quarantined_file),
            )

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.stop()
        if not await self._wait_thread_event(writer.stopped, "close"):
            _log.error("sqlite_writer_did_not_stop", store=self.url, timeout=self._timeout)

    async def _wait_thread_event(self, event: Any, what: str) -> bool:
        # threading.Event has no async wait; poll it off-loop with a deadline.
        loop = asyncio.get_running_loop()
        return bool(await loop.run_in_executor(None, event.wait, self._timeout))

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=self._timeout
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute(f"PRAGMA synchronous={_SYNC[self._durability]}")
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            # A small WAL that is checkpointed often is then *overwritten in place*: an
            # fsync of a file whose size does not change skips the metadata flush, which
            # measured ~120 us per commit here against ~180 us while the WAL grows.
            conn.execute(f"PRAGMA wal_autocheckpoint={self._wal_autocheckpoint}")
            if self._check_on_open:
                rows = conn.execute("PRAGMA quick_check").fetchall()
                if rows != [("ok",)]:
                    raise sqlite3.DatabaseError(
                        "quick_check failed: " + "; ".join(str(r[0]) for r in rows[:5])
                    )
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_connection(self) -> sqlite3.Connection:
        """Runs on the writer thread: connect; quarantine a damaged file and start afresh."""
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            # Only a file that is there but is not a sound database is moved aside; a
            # file that cannot be opened (permissions, locked, disk gone) is an
            # availability problem, and moving it would hide the operator's data.
            text = str(exc)
            damaged = any(w in text for w in _DAMAGE_WORDS)
            if not damaged or not self._path.is_file():
                raise
            self._quarantine_file(text)
            return self._connect()

    def _quarantine_file(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._clock.time()))
        target = self._path.with_name(f"{self._path.name}.corrupt-{stamp}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            src = pathlib.Path(str(self._path) + suffix)
            if src.exists():
                os.replace(src, pathlib.Path(str(target) + suffix))
        self.quarantined_file = target
        _log.error(
            "durable_store_file_quarantined",
            store=self.url,
            reason=reason,
            moved_to=str(target),
            message=(
                f"SQLite store {self._path} is corrupt or unreadable ({reason}); it was moved "
                f"to {target} (nothing deleted) and an empty store was created in its place"
            ),
        )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _read_version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"SQLite store {self._path} has schema version {version}, newer than this "
                    f"stalwart supports ({SCHEMA_VERSION}); upgrade stalwart"
                )
            for step in migrations("sqlite")[version:]:
                for stmt in step:
                    conn.execute(stmt)
            if version < SCHEMA_VERSION:
                conn.execute(q.SET_META, (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def _run(self, job: Job) -> Any:
        writer = self._writer
        if writer is None:
            raise StoreError(f"SQLite store {self._path} is not open; call `await store.open()`")
        if not writer.is_alive():  # fail at once rather than wait out the deadline
            raise StoreUnavailable(f"SQLite store {self._path}: its writer thread has stopped")
        fut = writer.submit(job)
        try:
            async with asyncio.timeout(self._timeout):
                return await fut
        except TimeoutError:
            raise StoreUnavailable(
                f"SQLite store {self._path} did not answer within {self._timeout:g} s"
            ) from None

    # -- tasks ------------------------------------------------------------------------
    async def schema_version(self) -> int:
        result: int = await self._run(_read_version)
        return result

    async def create_task(
        self, agent: str, input: Any, *, task_id: str | None = None, seed: int | None = None
    ) -> TaskRecord:
        check_task_args(agent, task_id, seed)
        tid = task_id or new_task_id()
        record = encode_input(tid, input)
        seed_ = new_seed() if seed is None else seed
        now = self._clock.time()

        def job(conn: sqlite3.Connection) -> int:
            return conn.execute(q.INSERT_TASK, (tid, agent, record, seed_, now, now)).rowcount

        if await self._run(job) == 0:
            raise StoreError(f"a task with id {tid!r} already exists")
        return TaskRecord(
            tid, agent, input, "pending", seed_, 0, None, 0, None, None, now, now, None
        )

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self._run(lambda c: c.execute(q.SELECT_TASK, (task_id,)).fetchone())
        return None if row is None else task_from_row(row)

    async def register_node(self, node_id: str, info: dict[str, Any]) -> None:
        blob, now = msgspec.json.encode(info), self._clock.time()
        await self._run(lambda c: c.execute(q.UPSERT_NODE, (node_id, blob, now, now)))

    async def node_heartbeat(self, node_id: str) -> None:
        now = self._clock.time()
        await self._run(lambda c: c.execute(q.NODE_HEARTBEAT, (now, node_id)))

    async def unregister_node(self, node_id: str) -> None:
        await self._run(lambda c: c.execute(q.DELETE_NODE, (node_id,)))

    async def list_nodes(self) -> list[NodeRecord]:
        rows = await self._run(lambda c: c.execute(q.LIST_NODES).fetchall())
        return [node_from_row(r) for r in rows]

    async def list_tasks(
        self,
        *,
        status: TaskStatus | None = None,
        limit: int = 100,
        agent: str | None = None,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        sql, args = list_query(q, status, limit, agent, newest_first)
        rows = await self._run(lambda c: c.execute(sql, args).fetchall())
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
        # One writer at a time: no row locks, and a capped claim's count and take are
        # one atomic statement.
        sql, args = acquire_query(
            q, "", owner, expires, now,
            task_id=task_id, force=force, agent=agent, max_running=max_running,
        )  # fmt: skip
        row = await self._run(lambda c: c.execute(sql, args).fetchone())
        if row is None:
            return None
        try:
            task = task_from_row(row)
        except CorruptRecord as exc:
            await self._fail_corrupt_task(row, owner, str(exc))
            raise
        return Lease(task.id, owner, task.lease_token, expires, task)

    async def _fail_corrupt_task(self, row: Sequence[Any], owner: str, reason: str) -> None:
        """Nothing good remains of a task whose input is damaged: quarantine it, fail it."""
        tid, token = row[0], row[7]
        now = self._clock.time()
        outcome = encode_outcome(tid, {"type": "CorruptRecord", "message": reason})
        # The damaged input moves to quarantine; the row keeps a readable marker so
        # the task can still be listed and shows why it failed.
        marker = encode_input(tid, {"quarantined_input": reason})

        def job(conn: sqlite3.Connection) -> None:
            conn.execute(q.QUARANTINE, (tid, -1, "task", reason, row[3], now))
            conn.execute(q.FINISH, ("failed", outcome, now, now, tid, owner, token))
            conn.execute("UPDATE stalwart_tasks SET input = ? WHERE id = ?", (marker, tid))

        await self._run(job)
        self._reporter.corrupt(tid, -1, "task", reason)

    async def heartbeat(self, lease: Lease, lease_seconds: float) -> Lease:
        check_lease_seconds(lease_seconds)
        now = self._clock.time()
        expires = now + lease_seconds
        args = (expires, now, lease.task_id, lease.owner, lease.token)
        count = await self._run(lambda c: c.execute(q.HEARTBEAT, args).rowcount)
        if count == 0:
            raise _lease_lost(lease)
        return Lease(lease.task_id, lease.owner, lease.token, expires, lease.task)

    async def release(self, lease: Lease) -> None:
        args = (self._clock.time(), lease.task_id, lease.owner, lease.token)
        if await self._run(lambda c: c.execute(q.RELEASE, args).rowcount) == 0:
            raise _lease_lost(lease)

    async def finish(self, lease: Lease, status: TaskStatus, outcome: Any) -> None:
        if status not in ("succeeded", "failed", "cancelled"):
            raise StoreError(
                f"finish: status must be succeeded, failed or cancelled, not {status!r}"
            )
        record = encode_outcome(lease.task_id, outcome)
        now = self._clock.time()
        args = (status, record, now, now, lease.task_id, lease.owner, lease.token)
        if await self._run(lambda c: c.execute(q.FINISH, args).rowcount) == 0:
            raise _lease_lost(lease)

    async def cancel(self, task_id: str, outcome: Any) -> TaskRecord | None:
        record = encode_outcome(task_id, outcome)
        now = self._clock.time()

        def job(conn: sqlite3.Connection) -> Any:
            conn.execute(q.CANCEL, (record, now, now, task_id))
            return conn.execute(q.SELECT_TASK, (task_id,)).fetchone()

        row = await self._run(job)
        return None if row is None else task_from_row(row)

    async def suspend(self, lease: Lease, outcome: Any) -> None:
        record = encode_outcome(lease.task_id, outcome)
        args = (record, self._clock.time(), lease.task_id, lease.owner, lease.token)
        if await self._run(lambda c: c.execute(q.SUSPEND, args).rowcount) == 0:
            raise _lease_lost(lease)

    async def wake(self, task_id: str) -> bool:
        args = (self._clock.time(), task_id)
        return bool(await self._run(lambda c: c.execute(q.WAKE, args).rowcount))

    # -- journal ----------------------------------------------------------------------
    async def append(self, lease: Lease, entries: Sequence[JournalEntry]) -> None:
        fence = (lease.task_id, lease.owner, lease.token)
        rows = [
            (lease.task_id, e.seq, e.kind, e.name, encode_entry(lease.task_id, e), *fence)
            for e in entries
        ]

        def job(conn: sqlite3.Connection) -> None:
            for row in rows:
                if conn.execute(q.APPEND, row).rowcount == 0:
                    _explain_refusal(conn, lease, row[1])

        await self._run(job)

    async def load_journal(self, task_id: str) -> JournalLoad:
        now = self._clock.time()

        def job(conn: sqlite3.Connection) -> tuple[JournalLoad, list[tuple[RawRow, str]]]:
            rows = [
                RawRow(int(s), k, n, None if r is None else bytes(r))
                for s, k, n, r in conn.execute(q.LOAD_JOURNAL, (task_id,))
            ]
            load, moves = plan_load(task_id, rows)
            for row, reason in moves:
                conn.execute(q.QUARANTINE, (task_id, row.seq, row.kind, reason, row.record, now))
                conn.execute(q.DELETE_ENTRY, (task_id, row.seq))
            return load, moves

        load, moves = await self._run(job)
        for row, reason in moves:
            self._reporter.corrupt(task_id, row.seq, row.kind, reason)
        return load  # type: ignore[no-any-return]

    # -- ledger -----------------------------------------------------------------------
    async def load_effects(self, task_id: str) -> dict[int, EffectRecord]:
        now = self._clock.time()

        def job(conn: sqlite3.Connection) -> tuple[dict[int, EffectRecord], list[tuple[int, str]]]:
            found: dict[int, EffectRecord] = {}
            bad: list[tuple[int, str]] = []
            for row in conn.execute(q.LOAD_EFFECTS, (task_id,)).fetchall():
                try:
                    rec = effect_from_row(row)
                except CorruptRecord as exc:
                    # A damaged ledger entry still proves the effect was started:
                    # keep it as "started" so replay never calls blindly.
                    key, _, seq, name = row[0], row[1], int(row[2]), row[3]
                    conn.execute(q.QUARANTINE, (task_id, seq, "effect", str(exc), row[5], now))
                    conn.execute(
                        "UPDATE stalwart_effects SET status = 'started', record = NULL "
                        "WHERE key = ?",
                        (key,),
                    )
                    rec = EffectRecord(key, task_id, seq, name, "started", None, now)
                    bad.append((seq, str(exc)))
                found[rec.seq] = rec
            return found, bad

        found, bad = await self._run(job)
        for seq, reason in bad:
            self._reporter.corrupt(task_id, seq, "effect", reason)
        return found  # type: ignore[no-any-return]

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

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute(q.EFFECT_START, args).rowcount == 0:
                _check_fence(conn, lease)

        await self._run(job)

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

        def job(conn: sqlite3.Connection) -> None:
            if conn.execute(q.EFFECT_FINISH, finish_args).rowcount == 0:
                _check_fence(conn, lease)
                raise StoreError(f"ledger has no started entry {key!r}")
            if conn.execute(q.APPEND, row).rowcount == 0:
                _explain_refusal(conn, lease, entry.seq)

        await self._run(job)

    # -- integrity and retention ---------------------------------------------------------
    async def quarantined(self, task_id: str | None = None) -> list[QuarantinedRecord]:
        sql = (
            q.LIST_QUARANTINE
            + (" WHERE task_id = ?" if task_id is not None else "")
            + " ORDER BY id"
        )
        args: tuple[Any, ...] = (task_id,) if task_id is not None else ()
        rows = await self._run(lambda c: c.execute(sql, args).fetchall())
        return [
            QuarantinedRecord(int(i), t, int(s), k, r, None if b is None else bytes(b), a)
            for i, t, s, k, r, b, a in rows
        ]

    async def purge_finished(self, before: float, mode: RetentionMode) -> int:
        if mode not in ("compact", "delete"):
            raise StoreError(f"retention mode must be 'compact' or 'delete', not {mode!r}")

        def job(conn: sqlite3.Connection) -> int:
            ids = [r[0] for r in conn.execute(q.PURGE_SELECT, (before, 10_000))]
            count = 0
            for tid in ids:
                had = conn.execute(q.PURGE_JOURNAL, (tid,)).rowcount
                had += conn.execute(q.PURGE_EFFECTS, (tid,)).rowcount
                if mode == "delete":
                    had += conn.execute(q.PURGE_TASK, (tid,)).rowcount
                count += 1 if had else 0
            return count

        count: int = await self._run(job)
        return count


def _read_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stalwart_meta'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute(q.GET_META).fetchone()
    return 0 if row is None else int(row[0])


def _lease_lost(lease: Lease) -> LeaseLost:
    _metrics.LEASES_LOST.inc()
    return LeaseLost(
        f"task {lease.task_id!r}: lease token {lease.token} of {lease.owner!r} is no longer "
        "current (expired and taken over, released, or the task finished)"
    )


def _check_fence(conn: sqlite3.Connection, lease: Lease) -> None:
    row = conn.execute(
        "SELECT lease_owner, lease_token, status FROM stalwart_tasks WHERE id = ?",
        (lease.task_id,),
    ).fetchone()
    if row is None or tuple(row) != (lease.owner, lease.token, "running"):
        raise _lease_lost(lease)


def _explain_refusal(conn: sqlite3.Connection, lease: Lease, seq: int) -> None:
    _check_fence(conn, lease)
    raise StoreError(f"task {lease.task_id!r}: journal already has a record #{seq}")
