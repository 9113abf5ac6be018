"""The SQLite writer thread: one connection, one queue, group commit.

Every operation (reads included) is a function of the connection queued to one
thread. The thread takes whatever has accumulated -- up to ``max_batch`` jobs
from any number of tasks -- runs them in a single transaction and commits once,
then resolves every caller's future. While one commit's fsync runs, the next
batch accumulates, so the cost of durability is shared by all concurrent tasks
(group commit) and no caller is told "done" before its write is committed.

Avoided: a connection per task (SQLite allows one writer at a time, so they
would serialize on the file lock with a retry loop) and ``asyncio.to_thread``
per call (a thread hop per statement and no batching).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from stalwart.durable import _metrics
from stalwart.errors import CorruptRecord, StoreError, StoreUnavailable

__all__ = ["Job", "Writer", "map_sqlite_error"]

Job = Callable[[sqlite3.Connection], Any]
_Item = tuple[Job, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def map_sqlite_error(exc: sqlite3.Error, where: str) -> StoreError:
    """Translate a sqlite3 error into the stalwart taxonomy, naming the file."""
    text = str(exc)
    # "database or disk is full" (SQLITE_FULL) is a condition of the machine, not of the
    # data: the same write succeeds once space is freed, so it is retryable like a lock.
    if isinstance(exc, sqlite3.OperationalError) and any(
        sign in text for sign in ("locked", "busy", "disk I/O", "unable to open", "is full")
    ):
        return StoreUnavailable(f"SQLite store {where}: {text}")
    if isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    ):
        return CorruptRecord(f"SQLite store {where} is damaged: {text}")
    return StoreError(f"SQLite store {where}: {type(exc).__name__}: {text}")


class Writer(threading.Thread):
    """Owns the connection; runs queued jobs in batched transactions."""

    def __init__(
        self, opener: Callable[[], sqlite3.Connection], where: str, max_batch: int
    ) -> None:
        super().__init__(name=f"stalwart-sqlite-writer[{where}]", daemon=True)
        self._opener = opener
        self._where = where
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self.ready = threading.Event()
        self.startup_error: BaseException | None = None
        self.stopped = threading.Event()

    def submit(self, job: Job) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((job, fut, loop))
        return fut

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        try:
            self._conn = self._opener()
        except BaseException as exc:  # reported to open(); the thread ends
            self.startup_error = exc
            self.ready.set()
            self.stopped.set()
            return
        self.ready.set()
        try:
            self._loop(self._conn)
        finally:
            try:
                self._conn.close()
            finally:
                self.stopped.set()

    def _loop(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()  # no-deadline: the writer thread idles until work or stop
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._run_batch(conn, batch)
        # Fail whatever arrived after the stop request instead of leaving it waiting.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                _deliver_one(item, False, StoreError(f"SQLite store {self._where} is closed"))

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Item]) -> None:
        started = time.perf_counter()
        results: list[tuple[_Item, bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            err = map_sqlite_error(exc, self._where)
            _deliver([(item, False, err) for item in batch])
            return
        for item in batch:
            try:
                results.append((item, True, item[0](conn)))
            except sqlite3.Error as exc:
                # A failed statement is rolled back by SQLite on its own; the
                # transaction and the other jobs in it stay valid.
                results.append((item, False, map_sqlite_error(exc, self._where)))
            except Exception as exc:
                results.append((item, False, exc))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            err = map_sqlite_error(exc, self._where)
            results = [(item, False, err) for item, _, _ in results]
        _metrics.COMMIT_BATCH.observe(len(batch))
        _metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        _deliver(results)


def _deliver(results: list[tuple[_Item, bool, Any]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for (_job, fut, loop), ok, value in results:
        by_loop.setdefault(loop, []).append((fut, ok, value))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # the caller's loop is closed; nobody is waiting
            pass


def _deliver_one(item: _Item, ok: bool, value: Any) -> None:
    _deliver([(item, ok, value)])


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():  # the caller gave up (deadline or cancellation)
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
