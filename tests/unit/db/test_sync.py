"""``Database.sync``: every commit so far made durable without an ordinary commit (an
fsync of SQLite's WAL; a synchronous commit that took a transaction id on PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import pathlib
import sqlite3
import threading
from typing import Any

import pytest
from tests._crash import crash_image
from tests._postgres import require_postgres

from stalwart.db import Component, Program, SQLiteDatabase, database
from stalwart.db import _sqlite as kernel
from stalwart.db._filelock import WriteLock
from stalwart.db._metrics import SYNCS
from stalwart.errors import StoreUnavailable

pytestmark = pytest.mark.timeout(60)

NOTES = Component("notes", (("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)",),))


def insert(note_id: str) -> Program[None]:
    yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))


def count() -> Program[int]:
    return int((yield ("SELECT count(*) FROM notes", ())).rows[0][0])


def synced(dialect: str = "sqlite") -> float:
    return SYNCS.labels(dialect)._value.get()


def wal_size(path: pathlib.Path) -> int:
    return pathlib.Path(f"{path}-wal").stat().st_size


def rows_if_cut(path: pathlib.Path, wal_bytes: int, into: pathlib.Path) -> int:
    """Notes in the database as an OS crash leaves it when its WAL reached the disk up to
    ``wal_bytes`` (nothing checkpointed into the main file meanwhile)."""
    conn = sqlite3.connect(crash_image(path, wal_bytes, into))
    try:
        return int(conn.execute("SELECT count(*) FROM notes").fetchone()[0])
    finally:
        conn.close()


async def test_a_sync_fsyncs_the_wal_that_holds_the_lazy_commits_before_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.db"
    seen: list[tuple[str, int]] = []  # (file fsynced, its size then)
    real = kernel._fsync

    def noting(wal: str) -> None:
        seen.append((wal, os.path.getsize(wal)))
        real(wal)

    monkeypatch.setattr(kernel, "_fsync", noting)
    db = SQLiteDatabase(path, wal_autocheckpoint=100_000)  # "full"; no checkpoint in between
    await db.open()
    try:
        await db.migrate(NOTES)
        await db.write(insert, "ordinary")  # fsynced by SQLite at its commit
        before = wal_size(path)
        await db.write(insert, "lazy", lazy=True)  # committed, not fsynced
        after = wal_size(path)
        assert after > before
        count_before = synced()
        await db.sync()
        assert synced() == count_before + 1
        assert seen == [(f"{path}-wal", after)]  # the WAL, with the lazy commit's frames
        # what an OS crash keeps: cut where the last fsync left the WAL
        assert rows_if_cut(path, before, tmp_path / "before") == 1
        assert rows_if_cut(path, seen[0][1], tmp_path / "synced") == 2
        assert await db.read(count) == 2
    finally:
        await db.close()


async def in_one_batch(db: SQLiteDatabase, *requests: Any) -> None:
    """Run ``requests`` in one batch of the writer: queued while it runs a job that waits,
    then let go together."""
    running, hold = threading.Event(), threading.Event()

    def blocker(conn: sqlite3.Connection) -> bool:
        running.set()
        return hold.wait(20)

    held = db._writer().submit_sync(blocker)
    assert await asyncio.to_thread(running.wait, 10)
    pending = [asyncio.ensure_future(r) for r in requests]
    await asyncio.sleep(0)  # each is queued behind the blocker's batch
    hold.set()
    await asyncio.gather(*pending)
    assert held.result(10) is True


async def test_syncs_of_one_batch_share_one_fsync_and_an_fsynced_commit_answers_them(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsynced: list[str] = []
    real = kernel._fsync

    def noting(wal: str) -> None:
        fsynced.append(wal)
        real(wal)

    monkeypatch.setattr(kernel, "_fsync", noting)
    db = SQLiteDatabase(tmp_path / "k.db")
    await db.open()
    try:
        await db.migrate(NOTES)
        await db.write(insert, "lazy", lazy=True)
        count_before = synced()
        await in_one_batch(db, *(db.sync() for _ in range(5)))
        assert len(fsynced) == 1 and synced() == count_before + 1  # one for the five
        await db.write(insert, "lazy again", lazy=True)
        await in_one_batch(db, db.write(insert, "ordinary"), db.sync(), db.sync())
        assert len(fsynced) == 1 and synced() == count_before + 1  # the commit's fsync did
        assert await db.read(count) == 3
    finally:
        await db.close()


async def test_a_sync_batched_with_writes_fsyncs_after_the_files_lock_is_let_go(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's writer need not wait for the WAL's fsync: the writer answers the
    batch's syncs once its commit is done and the file's write lock released."""
    path = tmp_path / "k.db"
    lock_free: list[bool | None] = []  # at each fsync: could another process lock the file?
    real = kernel._fsync

    def noting(wal: str) -> None:
        other = WriteLock(str(path))  # its own descriptor: flock's owner is the open file
        try:
            taken = other.try_lock()
            if taken:
                other.unlock()
            lock_free.append(taken)
        finally:
            other.close()
        real(wal)

    monkeypatch.setattr(kernel, "_fsync", noting)
    db = SQLiteDatabase(path, wal_autocheckpoint=100_000)
    await db.open()
    try:
        await db.migrate(NOTES)
        # a lazy write (it takes the file's lock, commits without an fsync) and the sync
        # that must make it durable
        await in_one_batch(db, db.write(insert, "lazy", lazy=True), db.sync())
        assert lock_free == [True]  # one fsync, made with the lock free for others
        assert await db.read(count) == 1
    finally:
        await db.close()


@pytest.mark.parametrize("durability", ["normal", "off"])
async def test_without_fsynced_commits_a_sync_has_nothing_to_do(
    tmp_path: pathlib.Path, durability: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel, "_fsync", _never)
    db = SQLiteDatabase(tmp_path / "k.db", durability=durability)
    await db.open()
    try:
        await db.migrate(NOTES)
        await db.write(insert, "a", lazy=True)
        count_before = synced()
        await db.sync()
        assert synced() == count_before
    finally:
        await db.close()


async def test_an_in_memory_database_has_nothing_to_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel, "_fsync", _never)
    db = SQLiteDatabase(":memory:")
    await db.open()
    try:
        await db.sync()
    finally:
        await db.close()


def _never(wal: str) -> None:
    raise AssertionError(f"no fsync expected, got one of {wal}")


async def test_a_sync_past_its_deadline_fails_naming_the_file(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = threading.Event()
    monkeypatch.setattr(kernel, "_fsync", lambda wal: stuck.wait(30))
    db = SQLiteDatabase(tmp_path / "k.db")
    await db.open()
    try:
        with pytest.raises(StoreUnavailable, match=r"k\.db did not answer within 0\.2 s"):
            await db.sync(timeout=0.2)
    finally:
        stuck.set()
        await db.close()


async def test_a_failed_fsync_is_the_stores_error(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(wal: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(kernel, "_fsync", failing)
    db = SQLiteDatabase(tmp_path / "k.db")
    await db.open()
    try:
        with pytest.raises(StoreUnavailable, match=r"fsync of its WAL: .*Input/output error"):
            await db.sync()
    finally:
        await db.close()


def _transaction_ids_taken(url: str) -> int:
    import psycopg

    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        row: Any = conn.execute("SELECT txid_current()").fetchone()
    return int(row[0])


@pytest.mark.postgres
async def test_a_postgres_sync_is_a_synchronous_commit_that_took_a_transaction_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stalwart.testing import postgres_database

    require_postgres()
    with postgres_database("stalwart_sync") as url:
        db = database(url)
        await db.open()
        try:
            await db.migrate(NOTES)
            await db.write(insert, "lazy", lazy=True)
            # what the sync's transaction did, seen through the kernel's own write
            seen: list[tuple[dict[str, Any], Any]] = []
            write = db.write

            async def noting(fn: Any, *args: Any, **kwargs: Any) -> Any:
                value = await write(fn, *args, **kwargs)
                seen.append((kwargs, value))
                return value

            monkeypatch.setattr(db, "write", noting)
            first, count_before = _transaction_ids_taken(url), synced("postgres")
            await db.sync()
            # the sync took an id between the two reads: without one a commit flushes nothing
            assert _transaction_ids_taken(url) >= first + 2
            assert synced("postgres") == count_before + 1
            # ... its own (other tests' transactions take ids too), in a synchronous commit
            [(kwargs, (xid, setting))] = seen
            assert not kwargs.get("lazy") and xid > first and setting == "on"
        finally:
            await db.close()
