"""The SQLite dialect: one connection on one writer thread, group commit.

Every operation (reads included) is queued to one thread that owns the
connection. The thread takes whatever has accumulated -- up to ``max_batch``
programs from any number of callers, of any component (journal, ledgers) --
runs them in one ``BEGIN IMMEDIATE`` transaction (each in a savepoint of its own: a
program that fails leaves none of its statements behind, the others commit; a program
alone in its batch needs none: its failure rolls the transaction back) and commits
once, then resolves every caller's future. While one commit's fsync runs, the next batch
accumulates, so durability's cost is shared by all concurrent callers and no
caller is told "done" before its write is committed. One file, one writer: a
second connection to the same file in the same process would only wait on the
file lock.

Durability levels (``PRAGMA synchronous`` in WAL mode): ``full`` (default; every
commit fsynced: survives a power loss), ``normal`` (survives a process kill; a
power loss may lose the last commits, never corrupts), ``off`` (no fsync).

A *lazy* job (``lazy=True``) is one whose writes need not reach the disk before its
caller goes on: a batch made only of lazy jobs commits at ``normal`` (written to the
WAL, so it survives a process kill, without an fsync), and the next commit that
fsyncs the WAL -- any batch with one ordinary job -- makes them durable with it
(one file, written in order). For data that is rebuilt or redone when lost and that
nothing durable can depend on before a later ordinary commit: a running task's
LangGraph checkpoints, which its journal replays, and a model call's journal record,
which a resumed task makes again (``docs/durable.md``, *What ``full`` guarantees*).

A lazy job may also be committed by its caller's own thread, when the writer has
nothing to do (``Writer.try_inline``): nothing queued or running, the connection, the
fork gate and the file's write lock all free at once. Each of its hand-offs -- to the
writer thread and back -- cost about as much as the commit itself (issue 19:
``docs/durable.md``, *Lazy commits made by their caller*). It never waits: whatever is
not free at once (the writer busy, another process's commit, a fork being made, a
SQLite lock taken outside stalwart) sends the job to the writer as before. Nothing
changes for the caller: its future (or its call) answers after the same commit at the
same level, errors mapped alike, and its job follows every job submitted before it
(the writer's answered count says when none is left). Inline commits take no WAL
checkpoint (``wal_autocheckpoint`` off for them: a checkpoint fsyncs twice); after
:data:`INLINE_RUN_MAX` of them in a row the next lazy job goes to the writer, whose
commit checkpoints the WAL if it has grown past its size.

Writers of several processes on one file (a node and its agents) take turns on the
file's write lock (``_filelock.py``: an ``flock`` the kernel hands to the next waiter)
before each write transaction, instead of SQLite's busy handler, which sleeps 1-100 ms
between tries. A job whose caller's deadline passed before its batch began is not
run (a cancelled caller's job still is).

A writer thread that died is started again by the next operation. A file that
fails its integrity check (``PRAGMA quick_check``) is never replaced: opening it
raises CorruptRecord naming the file and the recovery command.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pathlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from stalwart.config import Timeouts
from stalwart.db import _metrics
from stalwart.db._base import AdvisoryLock, Database
from stalwart.db._filelock import WriteLock
from stalwart.db._fork import FORK_GATE
from stalwart.db._migrate import Component, migrate_program, require_program
from stalwart.db._program import Program, drive_sync
from stalwart.errors import ConfigError, CorruptRecord, SchemaMissing, StoreError, StoreUnavailable
from stalwart.observe import get_logger

__all__ = ["DURABILITY_LEVELS", "Job", "SQLiteDatabase", "Writer", "map_sqlite_error"]

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
_Waiter = asyncio.Future[Any] | concurrent.futures.Future[Any]
_Item = tuple[Job, _Waiter, asyncio.AbstractEventLoop | None, bool, bool]
"""A queued job, the future to resolve, the caller's loop (None: a thread), lazy, and
whether it only reads."""
_Result = tuple[_Item, bool, Any]
"""A job, whether it succeeded, and its value or error."""
_log = get_logger("stalwart.db.sqlite")
DURABILITY_LEVELS = ("full", "normal", "off")
_SYNC = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}
MIN_FREE_BYTES = 4 * 1024 * 1024
"""Below this much free space on the file system, the write probe reads "full"."""
_COMMITS = {True: _metrics.COMMITS.labels("true"), False: _metrics.COMMITS.labels("false")}
_LAZY = {True: _metrics.LAZY_COMMITS.labels("true"), False: _metrics.LAZY_COMMITS.labels("false")}
INLINE_RUN_MAX = 64
"""Inline commits in a row before a lazy job goes to the writer thread anyway: its
commit runs the WAL checkpoint inline commits skip, which bounds the WAL's growth."""
_INLINE = _metrics.INLINE_COMMITS
_SYNCS = _metrics.SYNCS.labels("sqlite")
_DAMAGE_WORDS = ("not a database", "malformed", "corrupt", "quick_check failed", "encrypted")


def map_sqlite_error(exc: sqlite3.Error, where: str) -> StoreError:
    """Translate a sqlite3 error into the stalwart taxonomy, naming the file."""
    text = str(exc)
    # "database or disk is full" (SQLITE_FULL) is a condition of the machine, not of the
    # data: the same write succeeds once space is freed, so it is retryable like a lock.
    if isinstance(exc, sqlite3.OperationalError) and "is full" in text:
        return StoreUnavailable(
            f"SQLite store {where}: {text}: free space on the disk that holds it; writes "
            "succeed again once there is room, with no restart (nothing was written)"
        )
    if isinstance(exc, sqlite3.OperationalError) and any(
        sign in text for sign in ("locked", "busy", "disk I/O", "unable to open")
    ):
        return StoreUnavailable(f"SQLite store {where}: {text}")
    if isinstance(exc, sqlite3.DatabaseError) and any(w in text for w in _DAMAGE_WORDS):
        return CorruptRecord(
            f"SQLite store {where} is damaged: {text}; nothing was changed. Check it with "
            f"`stalwart store check sqlite:///{where}` and salvage what is readable with "
            f"`stalwart store recover sqlite:///{where} --to NEW.db`"
        )
    return StoreError(f"SQLite store {where}: {type(exc).__name__}: {text}")


class Writer(threading.Thread):
    """Owns the connection; runs queued jobs in batched transactions."""

    def __init__(
        self,
        opener: Callable[[], sqlite3.Connection],
        where: str,
        max_batch: int,
        durability: str = "full",
        lock: WriteLock | None = None,
    ) -> None:
        super().__init__(name=f"stalwart-sqlite-writer[{where}]", daemon=True)
        self._opener = opener
        self._where = where
        # the file's write lock, shared with other processes' writers (None: a private
        # or read-only database)
        self._lock = lock
        self._max_batch = max_batch
        # only a connection that fsyncs every commit has an fsync for a lazy batch to skip
        self._lazy_skips_fsync = durability == "full"
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # -- for inline commits (try_inline) --
        self._conn: sqlite3.Connection | None = None
        # held by the thread running SQLite on the connection (the writer for a whole
        # batch, its lock wait included; a caller committing inline)
        self._use = threading.Lock()
        self._counts = threading.Lock()  # guards _pending and _inline_run
        self._pending = 0  # jobs queued and not yet answered
        self._inline_run = 0  # inline commits since the writer's last write batch
        self._inline_off = False  # the writer stops, or inline commits cannot be made here
        # the pragmas an inline commit changes, with the values to put back
        self._inline_pragmas: list[tuple[str, str]] = []
        self._pragmas_dirty = False  # putting them back failed: the writer does it
        self._fsynced = False  # whether the connection's last commit fsynced the WAL
        self.ready = threading.Event()
        self.startup_error: BaseException | None = None
        self.stopped = threading.Event()

    def submit(self, job: Job, *, lazy: bool = False, reads: bool = False) -> asyncio.Future[Any]:
        """Queue ``job`` from an event loop; the future resolves on that loop. ``reads``:
        the job only reads (a batch of such jobs takes no write lock)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        with self._counts:
            self._pending += 1
        self._queue.put((job, fut, loop, lazy, reads))
        return fut

    def submit_sync(self, job: Job, *, lazy: bool = False) -> concurrent.futures.Future[Any]:
        """Queue ``job`` from a thread without a loop (a blocking caller). ``lazy``: see
        the module docstring."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._counts:
            self._pending += 1
        self._queue.put((job, fut, None, lazy, False))
        return fut

    def try_inline(self, job: Job) -> tuple[bool, Any] | None:
        """Commit a lazy ``job`` on the calling thread if the writer is idle; never waits.

        ``(True, value)`` or ``(False, error)``: the job ran in a transaction of its own,
        committed as a lazy batch is (module docstring), or failed and left nothing.
        None: it did not run (the writer has work, the connection or the file's lock is
        taken, a fork is being made, the store is stopping): submit it instead."""
        with self._counts:
            if self._pending or self._inline_off or self._inline_run >= INLINE_RUN_MAX:
                return None
            # taken under the count: a job submitted after this one waits for the
            # connection behind it, as it would behind a batch
            if not self._use.acquire(blocking=False):
                return None
        try:
            conn = self._conn
            if conn is None or not FORK_GATE.try_enter():
                return None
            try:
                return self._inline_locked(conn, job)
            finally:
                FORK_GATE.leave()
        finally:
            self._use.release()

    def _inline_locked(self, conn: sqlite3.Connection, job: Job) -> tuple[bool, Any] | None:
        lock = self._lock
        taken = None if lock is None else lock.try_lock()
        if taken is False:  # another process is committing: the writer waits its turn
            return None
        try:
            return self._inline_commit(conn, job)
        finally:
            if taken and lock is not None:
                lock.unlock()

    def _inline_commit(self, conn: sqlite3.Connection, job: Job) -> tuple[bool, Any] | None:
        started = time.perf_counter()
        changes = conn.total_changes
        try:
            for pragma, _ in self._inline_pragmas:
                conn.execute(pragma)
            try:
                # busy_timeout is 0 here: a lock taken outside stalwart's answers at once
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                return None  # (busy, or worse) the writer tries, with its waits and errors
            # committed as the writer commits a lazy batch (at full: no fsync)
            ((ok, value),) = self._transact(conn, [job], self._lazy_skips_fsync, started, changes)
        finally:
            try:
                for _, restore in self._inline_pragmas:
                    conn.execute(restore)
            except sqlite3.Error:  # (they touch no file) the writer puts them back first
                self._pragmas_dirty = True
                self._inline_off = True  # and no caller commits here again
        if ok:
            _INLINE.inc()
            with self._counts:
                self._inline_run += 1
        return ok, value

    def stop(self) -> None:
        self._inline_off = True
        self._queue.put(None)

    def run(self) -> None:
        try:
            # every SQLite call of this thread is made inside the fork gate: a process
            # forked meanwhile (a sync tool's child) would inherit SQLite's locks held
            with FORK_GATE.inside():
                conn = self._opener()
        except BaseException as exc:  # reported to open(); the thread ends
            self.startup_error = exc
            self.ready.set()
            self.stopped.set()
            return
        try:
            with FORK_GATE.inside():
                self._inline_pragmas = self._pragmas_for_inline(conn)
        except sqlite3.Error:  # no inline commits then; the writer works as before
            self._inline_off = True
        self._conn = conn
        self.ready.set()
        try:
            self._loop(conn)
        finally:
            self._inline_off = True
            try:
                with self._use, FORK_GATE.inside():
                    self._conn = None
                    conn.close()
            finally:
                if self._lock is not None:
                    self._lock.close()
                self.stopped.set()

    def _pragmas_for_inline(self, conn: sqlite3.Connection) -> list[tuple[str, str]]:
        """The statements an inline commit runs before its transaction, each with the one
        that puts the connection back: no fsync at ``full``, no busy wait (the caller's
        thread must not sleep in SQLite's busy handler), no WAL checkpoint."""
        pragmas = []
        if self._lazy_skips_fsync:
            pragmas.append(("PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"))
        for name in ("busy_timeout", "wal_autocheckpoint"):
            now = int(conn.execute(f"PRAGMA {name}").fetchone()[0])
            pragmas.append((f"PRAGMA {name}=0", f"PRAGMA {name}={now}"))
        return pragmas

    def _loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()  # no-deadline: the writer thread idles until work or stop
            if first is None:
                break
            batch = [first]
            stopping = self._gather(batch)
            writes = not all(item[4] for item in batch)
            # The connection is this thread's for the batch, its lock wait included: a
            # caller committing inline (try_inline) takes it only while this is idle.
            with self._use:
                if self._pragmas_dirty:
                    self._put_pragmas_back(conn)
                if self._lock is not None and writes:
                    # outside the fork gate: a fork waits for no other process
                    with self._lock.held():
                        # what came while this writer waited for another process's commit
                        # joins this one: under contention, fewer and larger commits
                        if not stopping:
                            stopping = self._gather(batch)
                        results, syncs = self._run_live(conn, batch)
                else:
                    results, syncs = self._run_live(conn, batch)
                if syncs:
                    # after the file's write lock is let go: an fsync of the WAL covers
                    # every frame written before it, whoever appends after (and frames a
                    # checkpoint moves out are in the main file, fsynced first), so
                    # another process's commit need not wait the ~0.3 ms for it
                    results += self._sync(syncs)
            with self._counts:
                self._pending -= len(batch)
                if writes:
                    self._inline_run = 0  # its commit checkpointed the WAL if it had grown
            # answered last: a caller that wakes up finds the writer idle for its next job
            _deliver(results)
        # Fail whatever arrived after the stop request instead of leaving it waiting.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                _deliver([(item, False, StoreError(f"SQLite store {self._where} is closed"))])

    def _gather(self, batch: list[_Item]) -> bool:
        """Add what is queued to ``batch`` (up to ``max_batch``); True if a stop came."""
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)
        return False

    def _put_pragmas_back(self, conn: sqlite3.Connection) -> None:
        for _, restore in self._inline_pragmas:
            conn.execute(restore)  # a failure here ends the thread; the next one starts clean
        self._pragmas_dirty = False

    def _run_live(
        self, conn: sqlite3.Connection, batch: list[_Item]
    ) -> tuple[list[_Result], list[_Item]]:
        """Run the jobs but those whose callers' deadlines passed while they waited (for the
        file's write lock, or behind a slow commit): those callers were told the store did
        not answer, and their jobs do not run later. A job whose caller was *cancelled*
        still runs, as before: a side effect's outcome record, say, is worth keeping for
        the task's resume even if nobody waits for it. (A future's state is read from this
        thread: a plain attribute read; a job whose caller gives up after this check runs,
        and is answered to nobody, as before.) Returns the jobs' results and the live sync
        requests, which the caller answers (:meth:`_sync`) once the file's lock is let go."""
        live = [item for item in batch if not _expired(item[1])]
        self._fsynced = False
        syncs = [item for item in live if item[0] is sync_request]
        jobs = [item for item in live if item[0] is not sync_request] if syncs else live
        results: list[_Result] = []
        if jobs:
            with FORK_GATE.inside():
                results = self._run_batch(conn, jobs)
        return results, syncs

    def _sync(self, syncs: list[_Item]) -> list[_Result]:
        """Answer sync requests (:meth:`SQLiteDatabase.sync`): the batch's own commit
        fsynced the WAL already, or this thread fsyncs it now -- once for all of them."""
        if not self._fsynced:
            try:
                _fsync(f"{self._where}-wal")
            except OSError as exc:
                err = StoreUnavailable(f"SQLite store {self._where}: fsync of its WAL: {exc}")
                return [(item, False, err) for item in syncs]
            _SYNCS.inc()
        return [(item, True, None) for item in syncs]

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Result]:
        if all(item[4] for item in batch):
            # Only reads: a deferred transaction, which in WAL mode takes no lock that
            # writers wait on. BEGIN IMMEDIATE made a node polling a task's status, or an
            # agent following a hand-over, queue for the file's write lock behind the
            # other processes' commits (up to 1 s each under load, issue 19) and hold it
            # from them in turn.
            return self._commit_batch(conn, batch, lazy=False, begin="BEGIN")
        lazy = self._lazy_skips_fsync and all(item[3] for item in batch)
        if not lazy:
            return self._commit_batch(conn, batch, lazy=False)
        # written to the WAL without an fsync; the next full commit syncs it with its own
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:  # (it touches no file) then an ordinary commit, fsynced
            return self._commit_batch(conn, batch, lazy=False)
        try:
            return self._commit_batch(conn, batch, lazy=True)
        finally:  # before the next batch: this thread runs them one after the other
            conn.execute("PRAGMA synchronous=FULL")

    def _commit_batch(
        self,
        conn: sqlite3.Connection,
        batch: list[_Item],
        *,
        lazy: bool,
        begin: str = "BEGIN IMMEDIATE",
    ) -> list[_Result]:
        """Run ``batch`` in one transaction and count it; its callers' answers."""
        started = time.perf_counter()
        changes = conn.total_changes
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            err = map_sqlite_error(exc, self._where)
            return [(item, False, err) for item in batch]
        outcomes = self._transact(conn, [item[0] for item in batch], lazy, started, changes)
        return [(item, ok, value) for item, (ok, value) in zip(batch, outcomes, strict=True)]

    def _transact(
        self, conn: sqlite3.Connection, jobs: list[Job], lazy: bool, started: float, changes: int
    ) -> list[tuple[bool, Any]]:
        """Run ``jobs`` in the transaction just begun, commit it (or roll it back) and
        count it: each job's success and its value or error. The one body of a writer's
        batch and of an inline commit (``try_inline``), so both keep, fail and count
        alike. ``started`` and ``changes``: the clock and ``total_changes`` before BEGIN."""
        # Each job in a savepoint of its own: one that fails leaves none of its
        # statements in the batch's transaction (SQLite rolls back only the failed
        # statement), so an operation of several writes -- an effect's end with its
        # journal entry, an entry with a joined write -- commits whole or not at all,
        # and the other jobs of the batch commit as before. A job alone in its batch
        # (every write of a task waiting on its own) needs none: its failure rolls the
        # whole transaction back, the same outcome without two statements per commit.
        alone = len(jobs) == 1
        outcomes: list[tuple[bool, Any]] = []
        try:
            for job in jobs:
                try:
                    if not alone:
                        conn.execute("SAVEPOINT stalwart_job")
                    value = job(conn)
                except Exception as exc:
                    if not alone:
                        _undo(conn)
                    failure: Exception = exc
                    if isinstance(exc, sqlite3.Error):
                        failure = map_sqlite_error(exc, self._where)
                    outcomes.append((False, failure))
                    continue
                if not alone:
                    try:
                        conn.execute("RELEASE stalwart_job")
                    except sqlite3.Error as exc:
                        _undo(conn)
                        outcomes.append((False, map_sqlite_error(exc, self._where)))
                        continue
                outcomes.append((True, value))
        except BaseException:  # (a KeyboardInterrupt in a job) no transaction left open
            _rollback(conn)
            raise
        if alone and not outcomes[0][0]:
            _rollback(conn)  # the one job failed: nothing of it is kept, nothing committed
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                err = map_sqlite_error(exc, self._where)
                outcomes = [(False, err)] * len(jobs)
            else:
                changed = conn.total_changes != changes
                # at full, a write transaction that changed the file fsynced its WAL (an
                # inline commit runs only while no batch does: it leaves this False)
                self._fsynced = changed and not lazy and self._lazy_skips_fsync
                _COMMITS[changed].inc()
                if lazy:
                    _LAZY[changed].inc()
        _metrics.COMMIT_BATCH.observe(len(jobs))
        _metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        return outcomes  # counted first: a caller that wakes up sees its commit counted


def _expired(fut: _Waiter) -> bool:
    """Whether the caller stopped waiting at its deadline (:func:`_expire`, or
    :meth:`SQLiteDatabase._submit_blocking`): its future holds the error it was told."""
    return fut.done() and not fut.cancelled()


def _rollback(conn: sqlite3.Connection) -> None:
    """End the batch's transaction keeping nothing (SQLite may have ended it already,
    after an I/O error or a full disk: then there is nothing to roll back)."""
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _undo(conn: sqlite3.Connection) -> None:
    """Roll a failed job back to its savepoint (if it got that far) and drop the savepoint."""
    try:
        conn.execute("ROLLBACK TO stalwart_job")
        conn.execute("RELEASE stalwart_job")
    except sqlite3.Error:
        pass  # no savepoint (its own statement failed): nothing of the job was written


def _deliver(results: list[_Result]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for (_job, fut, loop, _lazy, _reads), ok, value in results:
        if loop is None:
            assert isinstance(fut, concurrent.futures.Future)
            try:
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            except concurrent.futures.InvalidStateError:
                pass  # its caller's deadline passed meanwhile (SQLiteDatabase._submit_blocking)
            continue
        assert isinstance(fut, asyncio.Future)
        by_loop.setdefault(loop, []).append((fut, ok, value))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # the caller's loop is closed; nobody is waiting
            pass


def sync_request(conn: sqlite3.Connection) -> None:
    """A sync request in the writer's queue (:meth:`SQLiteDatabase.sync`), answered by
    ``Writer._sync``; never run as a job."""
    raise AssertionError("a sync request is not a job")


def _fsync(wal: str) -> None:
    """Fsync ``wal`` (a WAL gone is one checkpointed and removed: nothing to sync)."""
    try:
        fd = os.open(wal, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _answer(done: tuple[bool, Any]) -> Any:
    """An inline commit's value, or its error raised."""
    ok, value = done
    if ok:
        return value
    raise value


def _expire(fut: asyncio.Future[Any], path: object, limit: float) -> None:
    """A job's deadline passed: its caller stops waiting (the writer's answer, if it
    comes, finds the future done and is dropped)."""
    if not fut.done():
        fut.set_exception(
            StoreUnavailable(f"SQLite store {path} did not answer within {limit:g} s")
        )


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():  # the caller gave up (deadline or cancellation)
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class _Engine:
    """One file's writer thread in this process, shared by every SQLiteDatabase on the
    file (the journal, the guard's ledgers...): one connection, one group commit."""

    def __init__(self, key: tuple[str, ...], opener: Callable[[], sqlite3.Connection]) -> None:
        self.key = key
        self.opener = opener
        self.where = key[0]
        self.max_batch = int(key[2]) if len(key) > 2 else 512
        self.durability = key[3] if len(key) > 3 else "full"
        self.writer: Writer | None = None
        self.refs = 0
        self.lock = threading.Lock()

    def start(self, timeout: float) -> Writer:
        """Start a writer and wait (blocking, up to ``timeout``) until it is open."""
        shared = self.key[1] == "rw" and not self.where.startswith(":memory:")
        writer = Writer(
            self.opener,
            self.where,
            self.max_batch,
            self.durability,
            WriteLock(self.where) if shared else None,
        )
        writer.start()
        if not writer.ready.wait(timeout):
            writer.stop()
            raise StoreUnavailable(f"SQLite store {self.where} did not open within {timeout:g} s")
        if writer.startup_error is not None:
            raise writer.startup_error
        return writer

    def live(self, timeout: float) -> Writer:
        """The running writer; one that died is started again (its batch was lost
        uncommitted: its callers timed out or will)."""
        writer = self.writer
        if writer is not None and writer.is_alive():
            return writer
        with self.lock:
            if self.writer is not None and self.writer.is_alive():
                return self.writer
            if self.writer is not None:
                _log.error("sqlite_writer_restarted", store=self.where)
                _metrics.WRITER_RESTARTS.inc()
            self.writer = self.start(timeout)
            return self.writer


_ENGINES: dict[tuple[str, ...], _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _attach(
    key: tuple[str, ...], opener: Callable[[], sqlite3.Connection], timeout: float
) -> _Engine:
    """The engine of ``key``, started if this is its first user (blocking)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = _Engine(key, opener)
        engine.refs += 1
    try:
        engine.live(timeout)
    except BaseException:
        _detach(engine)
        raise
    return engine


def _detach(engine: _Engine) -> Writer | None:
    """Drop one user; returns the writer to stop when it was the last."""
    with _ENGINES_LOCK:
        engine.refs -= 1
        if engine.refs > 0:
            return None
        if _ENGINES.get(engine.key) is engine:
            del _ENGINES[engine.key]
    writer, engine.writer = engine.writer, None
    return writer


def shared_writable(path: pathlib.Path) -> tuple[str, ...] | None:
    """The key of an engine already writing ``path`` in this process, if there is one."""
    where = str(path.resolve())
    with _ENGINES_LOCK:
        for key in _ENGINES:
            if key[0] == where and key[1] == "rw":
                return key
    return None


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch the file to WAL, waiting up to ``timeout`` for a process doing the same.

    Changing the journal mode takes an exclusive lock, and SQLite answers "database is
    locked" at once, without its busy handler, when another connection holds the file
    then: two processes opening one fresh file together (a node starting while a CLI
    command creates the store) failed 30 of 400 opens here. Retried with a short
    backoff; once the file is in WAL the pragma needs no lock and returns at once."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)  # the writer's own thread, never an event loop
        delay = min(delay * 2, 0.1)


class SQLiteDatabase(Database):
    """A SQLite file (or ``:memory:``) behind one writer thread.

    Every SQLiteDatabase of one process on the same file with the same settings
    shares one writer thread (one connection, one group commit): the journal and
    the guard's ledgers commit together instead of waiting on each other for the
    file lock. ``join_any`` joins a writer already open on the file whatever its
    settings (for components that keep small tables beside a store).

    ``readonly`` opens the file read-only (``mode=ro``): a missing file raises
    SchemaMissing instead of creating one, and nothing is ever migrated.
    """

    dialect = "sqlite"

    def __init__(
        self,
        path: str | pathlib.Path,
        *,
        durability: str = "full",
        timeout: float | None = None,
        max_batch: int = 512,
        wal_autocheckpoint: int = 200,
        check_on_open: bool = True,
        readonly: bool = False,
        join_any: bool = False,
    ) -> None:
        if durability not in DURABILITY_LEVELS:
            raise ConfigError(
                f"durable.durability = {durability!r}; choose one of {', '.join(DURABILITY_LEVELS)}"
            )
        if not isinstance(max_batch, int) or not 1 <= max_batch <= 10_000:
            raise ConfigError(f"max_batch = {max_batch!r} must be an int in 1..10000")
        if not isinstance(wal_autocheckpoint, int) or not 10 <= wal_autocheckpoint <= 100_000:
            raise ConfigError(
                f"wal_autocheckpoint = {wal_autocheckpoint!r} must be an int in 10..100000 pages"
            )
        self.path = pathlib.Path(path)
        self.url = f"sqlite:///{self.path}"
        self.durability = durability
        self.timeout = Timeouts(store=timeout).store if timeout is not None else Timeouts().store
        self.readonly = readonly
        self._max_batch = max_batch
        self._wal_autocheckpoint = wal_autocheckpoint
        self._check_on_open = check_on_open
        self._join_any = join_any
        self._engine: _Engine | None = None

    def _key(self) -> tuple[str, ...]:
        if str(self.path) == ":memory:":
            where = f":memory:{id(self)}"  # a private database: never shared
        else:
            where = str(self.path.resolve())
            if self._join_any and not self.readonly:
                found = shared_writable(self.path)
                if found is not None:
                    return found
        mode = "ro" if self.readonly else "rw"
        return (where, mode, str(self._max_batch), self.durability,
                str(self._wal_autocheckpoint), str(self._check_on_open))  # fmt: skip

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        if self._engine is not None:
            return
        loop = asyncio.get_running_loop()
        # Starting a writer waits on a thread: off the loop.
        self._engine = await loop.run_in_executor(None, self._attach)

    def open_blocking(self) -> None:
        """:meth:`open` for a caller without an event loop (or in a worker thread)."""
        if self._engine is None:
            self._engine = self._attach()

    def _attach(self) -> _Engine:
        try:
            return _attach(self._key(), self._connect, self.timeout)
        except sqlite3.Error as err:
            if self.readonly and "unable to open" in str(err):
                raise SchemaMissing(
                    f"database {self.url} does not exist (or cannot be read); this command "
                    "only reads and never creates one: check the URL, or start the node "
                    "once (`stalwart run`) to create it"
                ) from err
            raise map_sqlite_error(err, str(self.path)) from err
        except OSError as err:
            raise StoreUnavailable(f"SQLite store {self.path}: {err}") from err

    async def close(self) -> None:
        writer = self._release()
        if writer is None:
            return
        writer.stop()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, writer.stopped.wait, self.timeout):
            _log.error("sqlite_writer_did_not_stop", store=self.url, timeout=self.timeout)

    def close_blocking(self) -> None:
        writer = self._release()
        if writer is not None:
            writer.stop()
            writer.stopped.wait(self.timeout)

    def _release(self) -> Writer | None:
        engine, self._engine = self._engine, None
        return None if engine is None else _detach(engine)

    def _connect(self) -> sqlite3.Connection:
        """Runs on the writer thread."""
        memory = str(self.path) == ":memory:"
        if self.readonly and not memory:
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.timeout,
            )
        else:
            if not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self.timeout
            )
        try:
            if not self.readonly:
                _enable_wal(conn, self.timeout)
            conn.execute(f"PRAGMA synchronous={_SYNC[self.durability]}")
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
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
        except BaseException:
            conn.close()
            raise
        return conn

    def _writer(self) -> Writer:
        engine = self._engine
        if engine is None:
            raise StoreError(f"SQLite store {self.path} is not open; call `await store.open()`")
        writer = engine.writer
        if writer is not None and writer.is_alive():
            return writer
        try:
            return engine.live(self.timeout)
        except sqlite3.Error as err:
            raise map_sqlite_error(err, str(self.path)) from err

    async def _submit(
        self, job: Job, timeout: float | None, lazy: bool = False, *, reads: bool = False
    ) -> Any:
        writer = self._writer()
        if lazy:
            done = writer.try_inline(job)
            if done is not None:
                return _answer(done)
        fut = writer.submit(job, lazy=lazy, reads=reads)
        limit = self.timeout if timeout is None else timeout
        # the deadline fails the job's future itself (a timer, not a Timeout scope: every
        # journal record waits here, and the scope cost its task a third of the wait's CPU)
        expiry = fut.get_loop().call_later(limit, _expire, fut, self.path, limit)
        try:
            return await fut
        finally:
            expiry.cancel()

    def _submit_blocking(self, job: Job, lazy: bool = False) -> Any:
        writer = self._writer()
        if lazy:
            done = writer.try_inline(job)
            if done is not None:
                return _answer(done)
        fut = writer.submit_sync(job, lazy=lazy)
        try:
            return fut.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            late = StoreUnavailable(
                f"SQLite store {self.path} did not answer within {self.timeout:g} s"
            )
            try:
                fut.set_exception(late)  # the writer skips the job (Writer._run_live)
            except concurrent.futures.InvalidStateError:
                return fut.result(timeout=0)  # it was answered meanwhile
            raise late from None

    def run_blocking(self, fn: Callable[..., Program[T]], *args: Any, lazy: bool = False) -> T:
        """Run a program in the next group commit from a thread (waits up to ``timeout``).

        For blocking callers that share the writer -- never call it on an event loop.
        ``lazy``: the commit need not be fsynced before this returns (module docstring)."""
        value: T = self._submit_blocking(lambda conn: drive_sync(conn, fn, args), lazy)
        return value

    # -- operations -----------------------------------------------------------------------
    async def write(
        self,
        fn: Callable[..., Program[T]],
        *args: Any,
        timeout: float | None = None,
        lazy: bool = False,
        lock: AdvisoryLock | None = None,
    ) -> T:
        # ``lock`` needs nothing here: every batch runs under the file's write lock
        value: T = await self._submit(lambda conn: drive_sync(conn, fn, args), timeout, lazy)
        return value

    def holds(self, url: str) -> bool:
        if self.readonly or str(self.path) == ":memory:" or not url.startswith("sqlite:///"):
            return False
        theirs = url.removeprefix("sqlite:///")
        return os.path.realpath(self.path) == os.path.realpath(theirs)

    async def sync(self, timeout: float | None = None) -> None:
        """Fsync the WAL file, on the writer thread, with its group commit: a request that
        shares a batch with a commit that fsynced costs nothing more, and all the
        requests of one batch share one fsync (concurrent tasks each asking for one
        would otherwise fsync once each). It takes no write lock. Every commit so far is
        then durable: its frames are in the WAL, or a checkpoint moved them into the main
        file and fsynced it before the WAL could be reused; and the WAL is not deleted
        while this process's connection is open. At ``normal`` or ``off``, or in memory:
        nothing to do."""
        if self.durability != "full" or str(self.path) == ":memory:" or self.readonly:
            return
        # a read, for the writer: it takes no write lock, and joins the group commit
        await self._submit(sync_request, timeout, reads=True)

    async def read(
        self, fn: Callable[..., Program[T]], *args: Any, timeout: float | None = None
    ) -> T:
        # One connection: reads queue with writes (and share a batch's transaction); a
        # batch of reads alone takes no write lock
        value: T = await self._submit(lambda conn: drive_sync(conn, fn, args), timeout, reads=True)
        return value

    async def migrate(self, component: Component) -> int:
        if self.readonly:
            return await self.require(component)
        version: int = await self._submit(self._migrate_job(component), None)
        return version

    def migrate_blocking(self, component: Component) -> int:
        """:meth:`migrate` from a thread."""
        if self.readonly:
            return self.run_blocking(require_program, "sqlite", component, self.url)
        version: int = self._submit_blocking(self._migrate_job(component))
        return version

    def _migrate_job(self, component: Component) -> Job:
        def job(conn: sqlite3.Connection) -> int:
            # A savepoint inside the batch's BEGIN IMMEDIATE: a step that fails
            # leaves none of its statements behind.
            conn.execute("SAVEPOINT stalwart_migrate")
            try:
                version = drive_sync(conn, migrate_program, ("sqlite", component, self.url))
            except BaseException:
                conn.execute("ROLLBACK TO stalwart_migrate")
                conn.execute("RELEASE stalwart_migrate")
                raise
            conn.execute("RELEASE stalwart_migrate")
            return version

        return job

    async def require(self, component: Component) -> int:
        return await self.read(require_program, "sqlite", component, self.url)

    async def probe(self, timeout: float) -> None:
        # A full disk does not always fail a small write (the WAL is overwritten in
        # place): look at the room left first.
        if str(self.path) != ":memory:":
            try:
                st = os.statvfs(self.path.parent)
            except OSError as exc:
                raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc
            if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
                raise StoreUnavailable(
                    f"SQLite store {self.path}: the file system is full "
                    f"({st.f_bavail * st.f_frsize} bytes free, under {MIN_FREE_BYTES})"
                )
        await super().probe(timeout)
