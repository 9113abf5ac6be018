"""The PostgreSQL dialect: psycopg 3, a connection pool, group commit, reconnects.

Writes from every caller of this process go to one queue; ``flushers``
coroutines (default 2) each take everything queued, run it in one transaction
on a pooled connection and commit once -- so concurrent callers share commits,
and while one batch commits the next one fills. Reads use the pool directly.

Reconnects: a connection that the server dropped (restart, failover, a killed
backend) fails the statement it was running; the transaction was therefore not
committed, so the operation is retried -- on another connection, with backoff,
within its deadline -- and the pool discards the broken connection and checks
the others. Only a failure *during* COMMIT leaves the outcome unknown; that one
is raised (CommitUnknown, a StoreUnavailable), never retried blindly.

Round trips: a step's journal record, alone in its group commit, is one round trip.
The pooled connections are in autocommit mode; a *one-write* program
(:func:`stalwart.db.one_write`) alone in a batch runs outside a transaction block, so
its one write commits with its own answer (a transaction block costs three: psycopg's
``BEGIN``, the statement, ``COMMIT``). Every other batch, and every read, runs in an
explicit transaction (``conn.transaction()``) as before. What was avoided: pipeline
mode for those -- ``BEGIN`` would ride with the first statement, but psycopg spends an
event-loop turn on every statement it queues, which costs a large batch more than the
one round trip it saves (measured with ``bench/pg_step_phases.py``).

Durability: "full" keeps ``synchronous_commit = on``; "normal" and "off" set
it off for these sessions (a server crash may lose the last commits; never
corrupts). A batch made only of *lazy* writes (``write(..., lazy=True)``) commits with
``synchronous_commit = off`` at "full" too: the server's next synchronous commit, later
in its WAL, flushes it.
Locks: a write may name an advisory lock (``write(..., lock=id)``); its batch takes the
locks of all its writes first, in ascending order, then runs the programs -- so a batch
waiting for such a lock holds no row lock yet, and two batches never wait on each other
through one. Writes with a lock and writes without are batched apart, so the latter never
wait for a lock that is not theirs.

Both or neither, per write: a program that raises after it changed rows (a joined write
whose second half refused) rolls back the whole batch; it gets its error, the batch's
other writes did not commit and run again. One that raises having changed nothing
(a fence that found the lease lost) leaves the transaction to the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from stalwart.config import Timeouts
from stalwart.db import _metrics
from stalwart.db._base import AdvisoryLock, Database, backoff, lock_order
from stalwart.db._migrate import MIGRATION_LOCK, Component, migrate_program, require_program
from stalwart.db._program import Program, Result, is_one_write, pg_sql
from stalwart.db._sqlite import DURABILITY_LEVELS
from stalwart.db._url import redact
from stalwart.errors import (
    CommitUnknown,
    ConfigError,
    CorruptRecord,
    StoreError,
    StoreUnavailable,
)
from stalwart.observe import get_logger

__all__ = ["PostgresDatabase", "drive_async", "map_pg_error"]


T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]
_log = get_logger("stalwart.db.postgres")
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
_CONNECTION_WAIT = 2.0
"""Longest wait for a pooled connection before the operation retries (within its deadline)."""
_Item = tuple[
    Callable[..., Program[Any]], Sequence[Any], asyncio.Future[Any], bool, AdvisoryLock | None
]
"""A queued program, its arguments, the future to resolve, lazy, its advisory lock."""
_CHANGES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})


class _Retry(Exception):
    """Internal: the operation did not commit and may run again (carries the cause)."""

    def __init__(self, cause: StoreError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Undo(Exception):
    """Internal: the ``index``-th program of a batch raised ``error`` after changing rows;
    the batch must roll back (committing would keep half of that program's write)."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


def map_pg_error(exc: BaseException, where: str) -> StoreError:
    """Translate a psycopg error into the stalwart taxonomy, naming the database."""
    if isinstance(exc, psycopg.errors.DataCorrupted | psycopg.errors.IndexCorrupted):
        return CorruptRecord(f"PostgreSQL store {where} is damaged: {exc}")
    if isinstance(exc, _TRANSIENT):
        return StoreUnavailable(f"PostgreSQL store {where}: {exc}")
    return StoreError(f"PostgreSQL store {where}: {type(exc).__name__}: {exc}")


async def drive_async(
    conn: Conn,
    fn: Callable[..., Program[T]],
    args: Sequence[Any],
    changed: list[bool] | None = None,
) -> T:
    """Run a program to its end on a psycopg connection (inside its transaction, or, on
    an autocommit connection outside one, each statement a transaction of its own).
    ``changed``: its one item is set True once a statement changed a row."""
    program = fn(*args)
    try:
        sql, params = next(program)
        while True:
            if params:
                cur = await conn.execute(pg_sql(sql, True), tuple(params))
            else:
                cur = await conn.execute(pg_sql(sql, False))
            if changed is not None and cur.rowcount > 0:
                changed[0] = changed[0] or (cur.statusmessage or "").split(" ", 1)[0] in _CHANGES
            rows = await cur.fetchall() if cur.description is not None else []
            sql, params = program.send(Result(rows, cur.rowcount))
    except StopIteration as stop:
        value: T = stop.value
        return value
    finally:
        program.close()


class PostgresDatabase(Database):
    """A PostgreSQL database through a pool of ``pool_size`` connections.

    ``url`` is a libpq URL; the password never appears in logs or errors.
    """

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        durability: str = "full",
        timeout: float | None = None,
        pool_size: int = 8,
        flushers: int = 2,
        max_batch: int = 512,
        idle_in_transaction_timeout: float = 2.0,
        readonly: bool = False,
    ) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"PostgresStore url must start with postgresql://, got {redact(url)!r}"
            )
        if not 2 <= pool_size <= 200 or not 1 <= flushers < pool_size:
            raise ConfigError(
                f"PostgresStore pool_size = {pool_size} must be in 2..200 and flushers = "
                f"{flushers} in 1..pool_size-1 (reads need a free connection)"
            )
        if durability not in DURABILITY_LEVELS:
            raise ConfigError(
                f"durable.durability = {durability!r}; choose one of {', '.join(DURABILITY_LEVELS)}"
            )
        if not isinstance(max_batch, int) or not 1 <= max_batch <= 10_000:
            raise ConfigError(f"max_batch = {max_batch!r} must be an int in 1..10000")
        if not 0.1 <= idle_in_transaction_timeout <= 600:
            raise ConfigError(
                f"idle_in_transaction_timeout = {idle_in_transaction_timeout!r} must be in "
                "0.1..600 s (keep it below the lease: a silent writer blocks takeovers)"
            )
        self.url_with_credentials = url
        self.url = redact(url)
        self.durability = durability
        self.timeout = Timeouts(store=timeout).store if timeout is not None else Timeouts().store
        self.readonly = readonly
        self._pool_size = pool_size
        self._flushers_n = flushers
        self._max_batch = max_batch
        self._idle_tx_timeout = idle_in_transaction_timeout
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._queue: list[_Item] = []
        self._idle: list[asyncio.Future[None]] = []
        """Flushers waiting for work, each on its own future: a write wakes one of them
        (the last to go idle), not every flusher for one of them to take the batch."""
        self._flushers: list[asyncio.Task[None]] = []
        self._closing = False
        self._checking: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def _configure(self, conn: Conn) -> None:
        sync = "on" if self.durability == "full" else "off"
        await conn.execute(f"SET synchronous_commit = {sync}")
        await conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")
        # A client that goes silent inside a transaction (partitioned, paused) would hold
        # its fence's row lock and block the takeover of its tasks: end such sessions.
        await conn.execute(
            f"SET idle_in_transaction_session_timeout = {int(self._idle_tx_timeout * 1000)}"
        )
        if self.readonly:
            await conn.execute("SET default_transaction_read_only = on")
        # autocommit: each SET above is already in effect for the session

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.url_with_credentials,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            timeout=self.timeout,
            configure=self._configure,
            reconnect_timeout=0,  # keep trying to reconnect for as long as we live
            # autocommit: every transaction is explicit (conn.transaction()), so a
            # one-write program can run outside one
            kwargs={"connect_timeout": max(1, int(self.timeout)), "autocommit": True},
        )
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except Exception as exc:
            await pool.close()
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unreachable: {exc}") from exc
        self._pool = pool
        self._closing = False
        self._flushers = [
            asyncio.create_task(self._flusher(), name=f"stalwart-pg-flusher-{i}")
            for i in range(self._flushers_n)
        ]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        self._closing = True
        for idle in self._idle:
            if not idle.done():
                idle.set_result(None)
        if self._flushers:
            _done, pending = await asyncio.wait(self._flushers, timeout=self.timeout)
            for task in pending:
                task.cancel()
        self._flushers = []
        for _, _, fut, _, _ in self._queue:
            if not fut.done():
                fut.set_exception(StoreError(f"PostgreSQL store {self.url} is closed"))
        self._queue.clear()
        if self._checking is not None:
            self._checking.cancel()
            self._checking = None
        await pool.close(timeout=self.timeout)

    @contextlib.asynccontextmanager
    async def _connection(self, timeout: float) -> AsyncIterator[Conn]:
        pool = self._pool
        if pool is None:
            raise StoreError(f"PostgreSQL store {self.url} is not open; call `await store.open()`")
        # A short wait, then a retry: after a server restart the pool opens connections
        # again only when asked, so a long wait here would outlast the outage itself.
        wait = max(0.01, min(timeout, _CONNECTION_WAIT))
        async with pool.connection(timeout=wait) as conn:
            yield conn

    def _check_pool(self) -> None:
        """After a lost connection: drop every broken idle connection now, not one by one."""
        pool = self._pool
        if pool is None or (self._checking is not None and not self._checking.done()):
            return

        async def check() -> None:
            with contextlib.suppress(Exception):
                await pool.check()

        # Owned: kept in self._checking, cancelled by close().
        self._checking = asyncio.get_running_loop().create_task(check())

    async def _retrying(self, attempt: Callable[[float], Any], timeout: float | None) -> Any:
        """Run ``attempt(remaining)`` until it succeeds, raises a final error, or the
        deadline passes; ``_Retry`` means "did not commit, may run again"."""
        loop = asyncio.get_running_loop()
        limit = self.timeout if timeout is None else timeout
        deadline = loop.time() + limit
        tries = 0
        while True:
            remaining = deadline - loop.time()
            try:
                async with asyncio.timeout(max(0.0, remaining)):
                    return await attempt(remaining)
            except _Retry as exc:
                tries += 1
                delay = backoff(tries)
                if loop.time() + delay >= deadline:
                    raise StoreUnavailable(
                        f"{exc.cause} (gave up after {tries} attempts in {limit:g} s)"
                    ) from None
                _metrics.RETRIES.labels(dialect="postgres").inc()
                await asyncio.sleep(delay)
            except TimeoutError:
                raise StoreUnavailable(
                    f"PostgreSQL store {self.url} did not answer within {limit:g} s"
                ) from None

    # -- group commit ---------------------------------------------------------------------
    async def write(
        self,
        fn: Callable[..., Program[T]],
        *args: Any,
        timeout: float | None = None,
        lazy: bool = False,
        lock: AdvisoryLock | None = None,
    ) -> T:
        if self._pool is None:
            raise StoreError(f"PostgreSQL store {self.url} is not open; call `await store.open()`")

        async def attempt(_remaining: float) -> Any:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queue.append((fn, args, fut, lazy, lock))
            self._wake_one()
            return await fut

        value: T = await self._retrying(attempt, timeout)
        return value

    def _wake_one(self) -> None:
        """Wake one idle flusher, if any (a busy one takes the queue when it is done)."""
        while self._idle:
            idle = self._idle.pop()
            if not idle.done():
                idle.set_result(None)
                return

    async def _flusher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                idle: asyncio.Future[None] = loop.create_future()
                self._idle.append(idle)
                try:
                    await idle
                finally:
                    if idle in self._idle:  # cancelled while idle (close's last resort)
                        self._idle.remove(idle)
                continue
            batch = self._take()
            if self._queue:
                self._wake_one()  # let another flusher start on the rest
            await self._commit(batch)

    def _take(self) -> list[_Item]:
        """The next batch: queued writes that name an advisory lock, or those that do
        not, whichever the oldest does (in order, at most ``max_batch``). A batch with a
        lock may wait for it, through its commit's flush: the other flusher meanwhile
        commits what waits for no lock, instead of holding it behind the lock."""
        locked = self._queue[0][4] is not None
        batch: list[_Item] = []
        rest: list[_Item] = []
        for item in self._queue:
            if (item[4] is not None) == locked and len(batch) < self._max_batch:
                batch.append(item)
            else:
                rest.append(item)
        self._queue[:] = rest  # in place: write() appends to this very list
        return batch

    async def _commit(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        # (a write naming a lock is never alone: its lock is taken in a transaction)
        if (
            len(batch) == 1
            and is_one_write(batch[0][0])
            and not batch[0][3]
            and batch[0][4] is None
        ):
            await self._commit_alone(batch[0])
        else:
            await self._commit_batch(batch)
        _metrics.COMMIT_BATCH.observe(len(batch))
        _metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)

    async def _commit_alone(self, item: _Item) -> None:
        """A one-write program alone in its batch: its write commits by itself.

        On an autocommit connection, outside a transaction block, the program's one
        write is a transaction of its own, committed (at ``full``: flushed to the WAL's
        disk) before the server answers it -- one round trip where a transaction block
        takes two. What follows it only reads. A lost connection leaves the write's
        outcome unknown, as a lost COMMIT does, but the program recognises its own
        write when run again (:func:`~stalwart.db._program.one_write`), so it is
        retried like a write that never reached the server.
        """
        fn, args, fut, _lazy, _lock = item
        outcome: tuple[bool, Any]
        try:
            async with self._connection(self.timeout) as conn:
                try:
                    outcome = (True, await drive_async(conn, fn, args))
                except psycopg.Error:
                    raise
                except Exception as exc:  # our own checks (LeaseLost...): nothing written
                    outcome = (False, exc)
        except _TRANSIENT as exc:
            self._check_pool()
            outcome = (False, _Retry(map_pg_error(exc, self.url)))
        except psycopg.Error as exc:
            outcome = (False, map_pg_error(exc, self.url))
        except StoreError as exc:
            outcome = (False, _Retry(exc))
        if not fut.done():
            if outcome[0]:
                fut.set_result(outcome[1])
            else:
                fut.set_exception(outcome[1])

    async def _commit_batch(self, batch: list[_Item]) -> None:
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        committing = False
        try:
            async with self._connection(self.timeout) as conn, conn.transaction():
                if self.durability == "full" and all(item[3] for item in batch):
                    # lazy only: the server's next synchronous commit flushes it
                    await conn.execute("SET LOCAL synchronous_commit = off")
                # every lock first, in one order: no batch waits for one while it
                # holds a row lock (or a lower lock) that the holder needs
                locks = {item[4] for item in batch if item[4] is not None}
                for lock in sorted(locks, key=lock_order):
                    if isinstance(lock, str):
                        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
                    else:
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                for fn, args, fut, _lazy, _lock in batch:
                    changed = [False]
                    try:
                        value = await drive_async(conn, fn, args, changed)
                        results.append((fut, True, value))
                    except psycopg.Error:
                        raise
                    except Exception as exc:
                        if changed[0]:  # half of its write is in: none of it may be
                            raise _Undo(len(results), exc) from exc
                        # Our own checks (LeaseLost...), raised after statements
                        # that changed nothing: the transaction stays valid.
                        results.append((fut, False, exc))
                committing = True  # leaving conn.transaction() sends COMMIT
        except _TRANSIENT as exc:
            err = map_pg_error(exc, self.url)
            self._check_pool()
            if committing:
                # The COMMIT may or may not have reached the server: never run it again.
                unknown = CommitUnknown(f"{err} (during commit: the outcome is unknown)")
                results = [(fut, False, unknown) for _, _, fut, _, _ in batch]
            else:
                results = [(fut, False, _Retry(err)) for _, _, fut, _, _ in batch]
        except _Undo as undo:
            # rolled back: the program that raised gets its error, the others run again
            again = StoreError(f"PostgreSQL store {self.url}: rolled back with a failed write")
            results = [
                (fut, False, undo.error if i == undo.index else _Retry(again))
                for i, (_, _, fut, _, _) in enumerate(batch)
            ]
        except psycopg.Error as exc:
            # One program's statement failed and aborted the transaction: that program
            # gets the error; the others did not commit and run again.
            culprit = len(results)
            err = map_pg_error(exc, self.url)
            results = [
                (fut, False, err if i == culprit else _Retry(err))
                for i, (_, _, fut, _, _) in enumerate(batch)
            ]
        except StoreError as exc:
            results = [(fut, False, _Retry(exc)) for _, _, fut, _, _ in batch]
        for fut, ok, value in results:
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    async def sync(self, timeout: float | None = None) -> None:
        """A synchronous commit of a transaction that took a transaction id: the server
        flushes its WAL up to that commit, so up to every asynchronous (lazy) commit
        before it. (A transaction that writes nothing and takes no id commits without a
        flush.) At ``normal`` or ``off`` no commit waits for a flush: nothing to do."""
        if self.durability != "full":
            return
        await self.write(_take_transaction_id, timeout=timeout)
        _metrics.SYNCS.labels(dialect="postgres").inc()

    def holds(self, url: str) -> bool:
        # The same connection parameters but the password (which may differ in spelling
        # only): any other difference -- host, port, database, user, options such as a
        # search_path -- may be another database, or other tables, so it does not join.
        if self.readonly or not url.startswith(("postgresql://", "postgres://")):
            return False
        try:
            mine = conninfo_to_dict(self.url_with_credentials)
            theirs = conninfo_to_dict(url)
        except psycopg.Error:
            return False
        mine.pop("password", None)
        theirs.pop("password", None)
        return mine == theirs

    # -- reads and migrations -------------------------------------------------------------
    async def read(
        self, fn: Callable[..., Program[T]], *args: Any, timeout: float | None = None
    ) -> T:
        async def attempt(remaining: float) -> Any:
            try:
                async with self._connection(remaining) as conn, conn.transaction():
                    value = await drive_async(conn, fn, args)
                return value
            except _TRANSIENT as exc:
                self._check_pool()
                raise _Retry(map_pg_error(exc, self.url)) from exc
            except psycopg.Error as exc:
                raise map_pg_error(exc, self.url) from exc

        value: T = await self._retrying(attempt, timeout)
        return value

    async def _locked(self, fn: Callable[..., Program[T]], *args: Any) -> T:
        """Run a program alone in a transaction holding the migration advisory lock."""

        async def attempt(remaining: float) -> Any:
            try:
                async with self._connection(remaining) as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    value = await drive_async(conn, fn, args)
                return value
            except _TRANSIENT as exc:
                self._check_pool()
                raise _Retry(map_pg_error(exc, self.url)) from exc
            except psycopg.Error as exc:
                raise map_pg_error(exc, self.url) from exc

        value: T = await self._retrying(attempt, None)
        return value

    async def migrate(self, component: Component) -> int:
        if self.readonly:
            return await self.require(component)
        return await self._locked(migrate_program, "postgres", component, self.url)

    async def require(self, component: Component) -> int:
        return await self.read(require_program, "postgres", component, self.url)


def _take_transaction_id() -> Program[tuple[int, str]]:
    """:meth:`PostgresDatabase.sync`'s transaction: it takes an id, so its commit waits
    for the flush; the id and the session's ``synchronous_commit`` (for the tests)."""
    row = (yield ("SELECT txid_current(), current_setting('synchronous_commit')", ())).rows[0]
    return int(row[0]), str(row[1])
