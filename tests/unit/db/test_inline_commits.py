"""Lazy commits made by their caller's thread while the SQLite writer is idle
(``Writer.try_inline``): the same commit as the writer's, and never a wait."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pathlib
import sqlite3
import threading
from collections.abc import AsyncIterator

import pytest

from stalwart.db import Component, Program, SQLiteDatabase
from stalwart.db._fork import FORK_GATE
from stalwart.db._metrics import COMMITS, INLINE_COMMITS, LAZY_COMMITS
from stalwart.db._sqlite import INLINE_RUN_MAX
from stalwart.errors import StoreError

pytestmark = pytest.mark.timeout(60)

NOTES = Component("notes", (("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)",),))
FULL, NORMAL = 2, 1  # PRAGMA synchronous values


def insert(note_id: str, threads: list[int], body: str = "") -> Program[int]:
    """Insert a note, noting the thread that runs the program; the connection's
    ``PRAGMA synchronous`` during the insert."""
    threads.append(threading.get_ident())
    yield ("INSERT INTO notes (id, body) VALUES (?, ?)", (note_id, body))
    return int((yield ("PRAGMA synchronous", ())).rows[0][0])


def settings() -> Program[tuple[int, int, int]]:
    got = []
    for name in ("synchronous", "busy_timeout", "wal_autocheckpoint"):
        got.append(int((yield (f"PRAGMA {name}", ())).rows[0][0]))
    return got[0], got[1], got[2]


def inline_settings(threads: list[int]) -> Program[tuple[int, int, int]]:
    threads.append(threading.get_ident())
    yield ("INSERT INTO notes (id) VALUES ('settings')", ())
    return (yield from settings())


def count() -> Program[int]:
    return int((yield ("SELECT count(*) FROM notes", ())).rows[0][0])


def insert_then_fail(note_id: str) -> Program[None]:
    yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))
    raise ValueError("the program's own error")


@pytest.fixture
async def db(tmp_path: pathlib.Path) -> AsyncIterator[SQLiteDatabase]:
    store = SQLiteDatabase(tmp_path / "k.db", timeout=30)
    await store.open()
    try:
        await store.migrate(NOTES)
        yield store
    finally:
        await store.close()


def inline_count() -> float:
    return INLINE_COMMITS._value.get()


async def test_an_idle_writer_lets_a_lazy_write_commit_on_the_callers_thread(
    db: SQLiteDatabase,
) -> None:
    before, threads = inline_count(), []
    assert await db.write(inline_settings, threads, lazy=True) == (NORMAL, 0, 0)
    assert threads == [threading.get_ident()] and inline_count() == before + 1
    # the connection is put back: fsynced commits, the busy handler, checkpoints
    assert await db.read(settings) == (FULL, 30_000, 200)
    # an ordinary write still goes to the writer thread, fsynced
    assert await db.write(insert, "plain", threads) == FULL
    assert threads[-1] != threading.get_ident() and inline_count() == before + 1
    assert await db.read(count) == 2


def test_a_blocking_callers_lazy_write_commits_on_its_thread(tmp_path: pathlib.Path) -> None:
    store = SQLiteDatabase(tmp_path / "k.db")
    store.open_blocking()
    try:
        store.migrate_blocking(NOTES)
        threads: list[int] = []
        assert store.run_blocking(insert, "a", threads, lazy=True) == NORMAL
        assert threads == [threading.get_ident()]
        assert store.run_blocking(settings) == (FULL, 10_000, 200)
    finally:
        store.close_blocking()


async def test_at_normal_an_inline_commit_is_counted_as_the_writers_would_be(
    tmp_path: pathlib.Path,
) -> None:
    """At ``normal`` no commit fsyncs, so none is a lazy one that skipped its fsync
    (``stalwart_db_lazy_commits_total``), inline or not; each is a commit that wrote."""
    store = SQLiteDatabase(tmp_path / "k.db", durability="normal")
    await store.open()
    try:
        await store.migrate(NOTES)
        lazy, wrote, inline = (
            LAZY_COMMITS.labels("true")._value.get(),
            COMMITS.labels("true")._value.get(),
            inline_count(),
        )
        threads: list[int] = []
        assert await store.write(insert, "a", threads, lazy=True) == NORMAL
        assert threads == [threading.get_ident()] and inline_count() == inline + 1
        assert COMMITS.labels("true")._value.get() == wrote + 1
        assert LAZY_COMMITS.labels("true")._value.get() == lazy
    finally:
        await store.close()


async def test_a_lazy_write_queues_behind_earlier_work_and_commits_after_it(
    db: SQLiteDatabase,
) -> None:
    writer = db._writer()
    running, hold, order = threading.Event(), threading.Event(), []

    def blocker(conn: sqlite3.Connection) -> bool:
        order.append("earlier")
        running.set()
        return hold.wait(20)

    before, threads = inline_count(), []
    earlier = writer.submit_sync(blocker)
    # (running: the later write cannot join the blocker's batch, an ordinary one)
    assert await asyncio.to_thread(running.wait, 10)
    later = asyncio.ensure_future(db.write(insert, "later", threads, lazy=True))
    await asyncio.sleep(0)  # the write has been submitted: it waits for its answer
    assert not later.done() and threads == []
    hold.set()
    assert await later == NORMAL  # a lazy batch of the writer's
    assert earlier.result(10) is True
    assert order == ["earlier"] and threads != [threading.get_ident()]
    assert inline_count() == before


async def test_another_processs_commit_sends_the_write_to_the_writer_and_the_loop_goes_on(
    db: SQLiteDatabase, tmp_path: pathlib.Path
) -> None:
    """The file's write lock held elsewhere (a descriptor of its own: to ``flock``, another
    process): the lazy write is queued, not waited for on the loop."""
    fd = os.open(f"{tmp_path / 'k.db'}-lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before, threads = inline_count(), []
        pending = asyncio.ensure_future(db.write(insert, "a", threads, lazy=True))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not pending.done() and threads == []
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert await pending == NORMAL
        assert threads != [threading.get_ident()] and inline_count() == before
    finally:
        os.close(fd)


@pytest.mark.timeout(20)
async def test_a_sqlite_lock_taken_outside_stalwart_never_holds_the_loop(
    db: SQLiteDatabase, tmp_path: pathlib.Path
) -> None:
    """A connection that takes SQLite's write lock without stalwart's file lock (the
    ``sqlite3`` shell): the inline attempt is refused at once (busy_timeout 0), the writer
    waits for the lock as it always did. Had the loop's thread waited in SQLite's busy
    handler, the store's 30 s timeout would pass this test's 20 s one."""
    other = sqlite3.connect(tmp_path / "k.db", isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        before, threads = inline_count(), []
        pending = asyncio.ensure_future(db.write(insert, "a", threads, lazy=True))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not pending.done()
        other.execute("COMMIT")
        assert await pending == NORMAL
        assert len(threads) == 1 and threads[0] != threading.get_ident()  # the writer's
        assert inline_count() == before
        assert await db.read(settings) == (FULL, 30_000, 200)
    finally:
        other.close()


async def test_a_failed_inline_write_leaves_nothing_and_the_next_one_commits(
    db: SQLiteDatabase,
) -> None:
    threads: list[int] = []
    with pytest.raises(ValueError, match="the program's own error"):
        await db.write(insert_then_fail, "gone", lazy=True)
    await db.write(insert, "a", threads, lazy=True)
    with pytest.raises(StoreError, match="UNIQUE constraint failed"):
        await db.write(insert, "a", threads, lazy=True)  # its own statement fails
    assert await db.write(insert, "b", threads, lazy=True) == NORMAL
    assert set(threads) == {threading.get_ident()}
    assert await db.read(count) == 2
    assert await db.read(settings) == (FULL, 30_000, 200)


def insert_then_interrupt(note_id: str) -> Program[None]:
    yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))
    raise KeyboardInterrupt


async def test_an_inline_write_interrupted_leaves_no_transaction_open(db: SQLiteDatabase) -> None:
    with pytest.raises(KeyboardInterrupt):
        await db.write(insert_then_interrupt, "gone", lazy=True)
    threads: list[int] = []
    assert await db.write(insert, "a", threads) == FULL  # the writer's BEGIN works
    assert await db.write(insert, "b", threads, lazy=True) == NORMAL
    assert await db.read(count) == 2


async def test_a_fork_being_made_sends_the_write_to_the_writer(db: SQLiteDatabase) -> None:
    assert FORK_GATE.close(5)
    try:
        before, threads = inline_count(), []
        pending = asyncio.ensure_future(db.write(insert, "a", threads, lazy=True))
        await asyncio.sleep(0)
        assert threads == []  # not run inline; the writer waits at the gate
    finally:
        FORK_GATE.open()
    assert await pending == NORMAL
    assert threads != [threading.get_ident()] and inline_count() == before


async def test_inline_writes_in_a_row_leave_the_wal_checkpointed_by_the_writer(
    db: SQLiteDatabase, tmp_path: pathlib.Path
) -> None:
    """Inline commits run no checkpoint; every INLINE_RUN_MAX + 1-th lazy write goes to
    the writer, whose commit does. 2,000 notes of 1 KB make about 16 MB of WAL frames
    with no checkpoint at all; bounded, the WAL is overwritten in place."""
    before, threads = inline_count(), []
    for n in range(2000):
        await db.write(insert, str(n), threads, "x" * 1000, lazy=True)
    here = threads.count(threading.get_ident())
    assert inline_count() - before == here
    assert 2000 - here == 2000 // (INLINE_RUN_MAX + 1)  # the writer took the rest
    assert os.path.getsize(f"{tmp_path / 'k.db'}-wal") < 4_000_000
    assert await db.read(count) == 2000
