"""The database kernel on SQLite: programs, per-component migrations, read-only opens,
a writer thread that died, error mapping, URL parsing."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.synchronize
import pathlib
import sqlite3
import threading

import pytest

from stalwart.db import (
    Component,
    Program,
    SQLiteDatabase,
    blocking,
    database,
    parse_url,
    pg_sql,
    render,
)
from stalwart.db._metrics import COMMITS, WRITER_RESTARTS
from stalwart.db._program import drive_sync
from stalwart.errors import ConfigError, SchemaMissing, StoreError, StoreUnavailable

NOTES_V1 = ("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)",)
NOTES_V2 = ("ALTER TABLE notes ADD COLUMN tag TEXT",)


def insert(note_id: str) -> Program[int]:
    return (
        yield ("INSERT INTO notes (id) VALUES (?) ON CONFLICT (id) DO NOTHING", (note_id,))
    ).rowcount


def count() -> Program[int]:
    return int((yield ("SELECT count(*) FROM notes", ())).rows[0][0])


async def test_components_migrate_in_steps_and_newer_is_refused(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    db = database(url)
    await db.open()
    try:
        assert await db.migrate(Component("notes", (NOTES_V1,))) == 0
        assert await db.write(insert, "a") == 1 and await db.write(insert, "a") == 0
        assert await db.migrate(Component("notes", (NOTES_V1, NOTES_V2))) == 1  # one step more
        assert await db.migrate(Component("notes", (NOTES_V1, NOTES_V2))) == 2  # nothing to do
        assert await db.migrate(Component("other", (("CREATE TABLE other (x INT)",),))) == 0
        with pytest.raises(StoreError, match="newer than this stalwart supports"):
            await db.migrate(Component("notes", (NOTES_V1,)))
        assert await db.read(count) == 1
    finally:
        await db.close()


def test_a_migration_statement_may_differ_per_dialect() -> None:
    """A mapping of dialect to text runs its own dialect's text, and nothing on a
    dialect it does not name (a trigger, written once per dialect)."""
    step = (
        "CREATE TABLE t (x {bigint})",
        {"sqlite": "CREATE TRIGGER t_sqlite ...", "postgres": "CREATE FUNCTION t_pg() ..."},
        {"postgres": "CREATE TRIGGER t_pg ..."},
    )
    both = Component("t", (step,))
    assert render(both, "sqlite") == [["CREATE TABLE t (x INTEGER)", "CREATE TRIGGER t_sqlite ..."]]
    assert render(both, "postgres") == [
        ["CREATE TABLE t (x BIGINT)", "CREATE FUNCTION t_pg() ...", "CREATE TRIGGER t_pg ..."]
    ]


async def test_a_failed_migration_step_leaves_nothing_behind(tmp_path: pathlib.Path) -> None:
    db = SQLiteDatabase(tmp_path / "k.db")
    await db.open()
    try:
        broken = Component("notes", (("CREATE TABLE notes (id TEXT)", "NOT SQL AT ALL"),))
        with pytest.raises(StoreError):
            await db.migrate(broken)
        with pytest.raises(SchemaMissing):
            await db.require(broken)
        assert await db.migrate(Component("notes", (NOTES_V1,))) == 0  # the table was not left
    finally:
        await db.close()


def insert_then_fail(note_id: str, how: str) -> Program[int]:
    yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))
    if how == "sql":
        yield ("INSERT INTO no_such_table VALUES (1)", ())
    raise ValueError("the operation failed after its first write")


@pytest.mark.parametrize("how", ["raise", "sql"])
async def test_a_failed_operation_leaves_none_of_its_writes_in_the_group_commit(
    tmp_path: pathlib.Path, how: str
) -> None:
    """Operations of one group commit: the one that fails after a first write (a raise, or
    a statement SQLite refuses) leaves nothing; the others in the same batch commit."""
    db = SQLiteDatabase(tmp_path / "k.db")
    await db.open()
    try:
        await db.migrate(Component("notes", (NOTES_V1,)))
        results = await asyncio.gather(
            db.write(insert, "before"),
            db.write(insert_then_fail, "broken", how),
            db.write(insert, "after"),
            return_exceptions=True,
        )
        assert results[0] == 1 and results[2] == 1
        assert isinstance(results[1], ValueError if how == "raise" else StoreError)
        assert await db.read(count) == 2  # "broken" was rolled back with its operation
    finally:
        await db.close()


def test_a_lone_operation_commits_without_a_savepoint_and_a_failed_one_leaves_nothing(
    tmp_path: pathlib.Path,
) -> None:
    """A job alone in its batch runs in the transaction itself (BEGIN, its statements,
    COMMIT): one that fails after a first write rolls the transaction back, so nothing of
    it is kept and no commit is counted; jobs batched together still get a savepoint each,
    and the failed one among them leaves nothing while the others commit."""
    db = SQLiteDatabase(tmp_path / "k.db")
    db.open_blocking()
    try:
        db.migrate_blocking(Component("notes", (NOTES_V1,)))
        writer = db._writer()
        seen: list[str] = []
        writer.submit_sync(lambda conn: conn.set_trace_callback(seen.append)).result(10)
        seen.clear()
        assert db.run_blocking(insert, "alone") == 1
        assert seen == ["BEGIN IMMEDIATE", "INSERT INTO notes (id) VALUES ('alone') "
                        "ON CONFLICT (id) DO NOTHING", "COMMIT"]  # fmt: skip
        wrote = COMMITS.labels("true")._value.get()
        seen.clear()
        with pytest.raises(ValueError, match="after its first write"):
            db.run_blocking(insert_then_fail, "broken", "raise")
        assert seen[0] == "BEGIN IMMEDIATE" and seen[-1] == "ROLLBACK"
        assert not any(s.startswith("SAVEPOINT") for s in seen)
        assert COMMITS.labels("true")._value.get() == wrote  # nothing was committed
        assert db.run_blocking(count) == 1  # "broken" was rolled back
        # three jobs queued behind a held one form one batch: a savepoint each
        hold = threading.Event()
        seen.clear()
        blocker = writer.submit_sync(lambda conn: hold.wait(10))
        batched = [
            writer.submit_sync(lambda conn, a=args: drive_sync(conn, a[0], a[1:]))
            for args in ((insert, "before"), (insert_then_fail, "x", "sql"), (insert, "after"))
        ]
        hold.set()
        assert blocker.result(10) is True
        assert batched[0].result(10) == 1 and batched[2].result(10) == 1
        with pytest.raises(StoreError):
            batched[1].result(10)
        # the held job is in their batch or alone in the one before (without a savepoint)
        assert seen.count("SAVEPOINT stalwart_job") in (3, 4) and seen[-1] == "COMMIT"
        assert db.run_blocking(count) == 3
        writer.submit_sync(lambda conn: conn.set_trace_callback(None)).result(10)
    finally:
        db.close_blocking()


async def test_read_only_opens_never_create_or_migrate(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(SchemaMissing, match="does not exist"):
        await SQLiteDatabase(missing, readonly=True).open()
    assert not missing.exists()
    sqlite3.connect(tmp_path / "empty.db").close()
    ro = SQLiteDatabase(tmp_path / "empty.db", readonly=True)
    await ro.open()
    try:
        with pytest.raises(SchemaMissing, match=r"has no notes schema.*stalwart run"):
            await ro.migrate(Component("notes", (NOTES_V1,)))
    finally:
        await ro.close()


def test_blocking_read_only_handles_never_create_or_migrate(tmp_path: pathlib.Path) -> None:
    notes = Component("notes", (NOTES_V1,))
    missing = tmp_path / "missing.db"
    with pytest.raises(SchemaMissing, match="does not exist"):
        blocking(f"sqlite:///{missing}", readonly=True).require(notes)
    assert not missing.exists()
    url = f"sqlite:///{tmp_path}/empty.db"
    sqlite3.connect(tmp_path / "empty.db").close()
    ro = blocking(url, readonly=True)
    try:
        with pytest.raises(SchemaMissing, match="has no notes schema"):
            ro.migrate(notes)  # read-only: migrate only checks
    finally:
        ro.close()
    rw = blocking(url)
    try:
        assert rw.migrate(notes) == 0
        assert rw.run(insert, "a") == 1
    finally:
        rw.close()
    ro = blocking(url, readonly=True)
    try:
        assert ro.require(notes) == 1 and ro.run(count) == 1
        with pytest.raises(StoreError, match="readonly"):  # the file is opened mode=ro
            ro.run(insert, "b")
    finally:
        ro.close()


def _open_and_write(url: str, key: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(30)  # both processes open the fresh file at the same moment
    db = blocking(url)
    try:
        db.migrate(Component("notes", (NOTES_V1,)))
        db.run(insert, key)
    finally:
        db.close()


def test_two_processes_opening_one_fresh_file_together_both_start(tmp_path: pathlib.Path) -> None:
    """Switching a fresh file to WAL is refused at once (no busy handler) while another
    process does it: a node and a CLI command creating one store together. Raced here
    30 times; both opens must succeed every time."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(30):
        url = f"sqlite:///{tmp_path}/race-{round_}.db"
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_open_and_write, args=(url, k, barrier)) for k in "ab"]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0, 0], f"round {round_}"
        db = blocking(url, readonly=True)
        try:
            assert db.run(count) == 2
        finally:
            db.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_dead_writer_thread_is_started_again(tmp_path: pathlib.Path) -> None:
    db = SQLiteDatabase(tmp_path / "k.db", timeout=5)
    await db.open()
    try:
        await db.migrate(Component("notes", (NOTES_V1,)))
        writer = db._writer()
        before = WRITER_RESTARTS._value.get()

        def die(conn: sqlite3.Connection) -> None:
            raise SystemExit  # not an Exception: it ends the thread

        with pytest.raises(StoreUnavailable, match="did not answer"):
            await db._submit(die, 0.5)
        writer.join(5)
        assert not writer.is_alive()
        assert await db.write(insert, "after") == 1  # a new writer took over
        assert WRITER_RESTARTS._value.get() == before + 1
    finally:
        await db.close()


async def test_two_users_of_one_file_share_one_writer(tmp_path: pathlib.Path) -> None:
    a, b = SQLiteDatabase(tmp_path / "k.db"), SQLiteDatabase(tmp_path / "k.db", join_any=True)
    await a.open()
    b.open_blocking()
    try:
        assert a._writer() is b._writer()
        await a.migrate(Component("notes", (NOTES_V1,)))
        assert b.run_blocking(insert, "x") == 1 and await a.read(count) == 1
    finally:
        await a.close()
        assert b._writer().is_alive()  # still used by b
        b.close_blocking()


def busy_timeout() -> Program[int]:
    return int((yield ("PRAGMA busy_timeout", ())).rows[0][0])


@pytest.mark.parametrize("held_s", [0.005, 0.06])
async def test_a_write_waits_for_another_connections_write_lock(
    tmp_path: pathlib.Path, held_s: float
) -> None:
    """Another process's transaction holds the file's write lock: the write goes through
    once it is released, and counts as one commit that wrote."""
    db = SQLiteDatabase(tmp_path / "k.db", timeout=5)
    await db.open()
    other = sqlite3.connect(tmp_path / "k.db", isolation_level=None, check_same_thread=False)
    try:
        await db.migrate(Component("notes", (NOTES_V1,)))
        wrote = COMMITS.labels("true")._value.get()
        other.execute("BEGIN IMMEDIATE")
        pending = asyncio.ensure_future(db.write(insert, "a"))
        await asyncio.sleep(held_s)  # the lock is held this long
        assert not pending.done()  # it cannot commit while the lock is held
        other.execute("COMMIT")
        assert await pending == 1
        assert COMMITS.labels("true")._value.get() == wrote + 1
        assert await db.read(busy_timeout) == 5000
    finally:
        other.close()
        await db.close()


async def test_a_write_lock_held_past_the_timeout_fails_the_write_and_nothing_more(
    tmp_path: pathlib.Path,
) -> None:
    db = SQLiteDatabase(tmp_path / "k.db", timeout=0.5)
    await db.open()
    other = sqlite3.connect(tmp_path / "k.db", isolation_level=None, check_same_thread=False)
    try:
        await db.migrate(Component("notes", (NOTES_V1,)))
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable):
            await db.write(insert, "a", timeout=2.0)
        other.execute("COMMIT")
        assert await db.write(insert, "a") == 1  # the writer is fine afterwards
        assert await db.read(busy_timeout) == 500
    finally:
        other.close()
        await db.close()


def test_postgres_spelling_and_urls() -> None:
    assert pg_sql("SELECT ? /*pg:FOR SHARE*/", True) == "SELECT %s FOR SHARE"
    assert pg_sql("SELECT '50%' WHERE x = ?", True) == "SELECT '50%%' WHERE x = %s"
    assert pg_sql("SELECT '50%'", False) == "SELECT '50%'"
    assert parse_url("postgresql://u:secret@h:5/db").display == "postgresql://u@h:5/db"
    assert parse_url("sqlite:///a/b.db").target == "a/b.db"
    with pytest.raises(ConfigError, match="unsupported scheme 'mysql'"):
        parse_url("mysql://x/y")
    with pytest.raises(ConfigError, match="mongodb") as info:
        parse_url("mongodb://u:secret@h/db")
    assert "secret" not in str(info.value)  # a wrong URL's password is never printed
