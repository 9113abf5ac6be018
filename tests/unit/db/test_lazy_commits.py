"""Lazy commits: a batch of lazy jobs only is written without an fsync of its own (the
next ordinary commit syncs it), and is still never lost to a process kill."""

from __future__ import annotations

import asyncio
import functools
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from tests._postgres import require_postgres

from stalwart.db import Component, Program, SQLiteDatabase, blocking
from stalwart.db._metrics import LAZY_COMMITS

pytestmark = pytest.mark.timeout(60)

NOTES = Component("notes", (("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)",),))


def insert_and_sync_level(note_id: str) -> Program[int]:
    """Insert a note; return the connection's ``PRAGMA synchronous`` during the insert."""
    yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))
    return int((yield ("PRAGMA synchronous", ())).rows[0][0])


def sync_level() -> Program[int]:
    return int((yield ("PRAGMA synchronous", ())).rows[0][0])


def count() -> Program[int]:
    return int((yield ("SELECT count(*) FROM notes", ())).rows[0][0])


FULL, NORMAL = 2, 1  # PRAGMA synchronous values


async def test_a_lazy_batch_skips_its_fsync_and_the_next_commit_is_full_again(
    tmp_path: pathlib.Path,
) -> None:
    db = SQLiteDatabase(tmp_path / "k.db")  # durability="full": every commit fsynced
    await db.open()
    try:
        await db.migrate(NOTES)
        before = LAZY_COMMITS.labels("true")._value.get()
        lazily = functools.partial(db.run_blocking, insert_and_sync_level, "a", lazy=True)
        assert await asyncio.to_thread(lazily) == NORMAL
        assert LAZY_COMMITS.labels("true")._value.get() == before + 1
        # the writer is back at full for the ordinary commits that follow
        assert await db.read(sync_level) == FULL
        assert await asyncio.to_thread(db.run_blocking, insert_and_sync_level, "b") == FULL
        assert LAZY_COMMITS.labels("true")._value.get() == before + 1
        assert await db.read(count) == 2
    finally:
        await db.close()


async def test_a_lazy_job_in_a_batch_with_an_ordinary_one_is_fsynced_with_it(
    tmp_path: pathlib.Path,
) -> None:
    db = SQLiteDatabase(tmp_path / "k.db")
    await db.open()
    try:
        await db.migrate(NOTES)
        writer = db._writer()
        hold = threading.Event()
        # a job that holds the writer so that the next two queue into one batch
        blocker = writer.submit_sync(lambda conn: hold.wait(10))
        lazy = writer.submit_sync(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0],
                                  lazy=True)  # fmt: skip
        plain = writer.submit_sync(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
        hold.set()
        assert blocker.result(10) is True
        assert (lazy.result(10), plain.result(10)) == (FULL, FULL)
    finally:
        await db.close()


async def test_an_async_lazy_write_skips_its_fsync_and_the_next_write_is_full_again(
    tmp_path: pathlib.Path,
) -> None:
    """The event-loop path (``Database.write(..., lazy=True)``, as the journal's lazy
    model records use it) behaves as the blocking one."""
    db = SQLiteDatabase(tmp_path / "k.db")
    await db.open()
    try:
        await db.migrate(NOTES)
        before = LAZY_COMMITS.labels("true")._value.get()
        assert await db.write(insert_and_sync_level, "a", lazy=True) == NORMAL
        assert LAZY_COMMITS.labels("true")._value.get() == before + 1
        assert await db.write(insert_and_sync_level, "b") == FULL
        assert LAZY_COMMITS.labels("true")._value.get() == before + 1
        assert await db.read(count) == 2
    finally:
        await db.close()


def test_a_durability_normal_store_is_left_as_it_is(tmp_path: pathlib.Path) -> None:
    db = SQLiteDatabase(tmp_path / "k.db", durability="normal")
    db.open_blocking()
    try:
        db.migrate_blocking(NOTES)
        assert db.run_blocking(insert_and_sync_level, "a", lazy=True) == NORMAL
        assert db.run_blocking(sync_level) == NORMAL
    finally:
        db.close_blocking()


WRITE_LAZILY_AND_WAIT = textwrap.dedent(
    """
    import sys, time
    from stalwart.db import Component, blocking
    db = blocking(sys.argv[1])
    db.migrate(Component("notes", (("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)",),)))
    def insert(n):
        yield ("INSERT INTO notes (id) VALUES (?)", (n,))
    for n in range(20):
        db.run(insert, str(n), lazy=True)
    print("written", flush=True)
    time.sleep(60)  # killed here
    """
)


def test_lazy_commits_survive_a_sigkill_of_the_process(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITE_LAZILY_AND_WAIT, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    db = blocking(url, readonly=True)
    try:
        assert db.run(count) == 20
    finally:
        db.close()


def commit_setting(note_id: str) -> Program[str]:
    yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))
    return str((yield ("SHOW synchronous_commit", ())).rows[0][0])


@pytest.mark.postgres
def test_a_lazy_transaction_on_postgres_commits_asynchronously_and_only_itself() -> None:
    from stalwart.testing import postgres_database

    require_postgres()
    with postgres_database("stalwart_lazy") as url:
        db = blocking(url)
        try:
            db.migrate(NOTES)
            assert db.run(commit_setting, "a", lazy=True) == "off"
            assert db.run(commit_setting, "b") == "on"  # SET LOCAL: that transaction only
            assert db.run(count) == 2
        finally:
            db.close()


@pytest.mark.postgres
async def test_an_async_lazy_write_on_postgres_commits_asynchronously_and_only_itself() -> None:
    from stalwart.db import database
    from stalwart.testing import postgres_database

    require_postgres()
    with postgres_database("stalwart_lazy_async") as url:
        db = database(url)
        await db.open()
        try:
            await db.migrate(NOTES)
            assert await db.write(commit_setting, "a", lazy=True) == "off"
            assert await db.write(commit_setting, "b") == "on"  # that transaction only
            assert await db.read(count) == 2
        finally:
            await db.close()
