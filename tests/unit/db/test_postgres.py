"""The database kernel on PostgreSQL: a batch's advisory locks, both-or-neither per
write inside a group commit, and which URLs name the same database."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator

import pytest
from tests._postgres import require_postgres

from stalwart.db import Component, Program, database
from stalwart.db._postgres import PostgresDatabase
from stalwart.testing import postgres_database

pytestmark = pytest.mark.postgres

NOTES = Component("notes", (("CREATE TABLE notes (id TEXT PRIMARY KEY)",),))
LOCK = 0x1234_5678


def insert(note_id: str) -> Program[int]:
    return (yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))).rowcount


def insert_then_fail(note_id: str) -> Program[int]:
    yield ("INSERT INTO notes (id) VALUES (?)", (note_id,))
    raise ValueError("the operation failed after its first write")


def fail_first(note_id: str) -> Program[int]:
    yield ("SELECT count(*) FROM notes WHERE id = ?", (note_id,))  # changes nothing
    raise LookupError("refused before any write")


def count() -> Program[int]:
    return int((yield ("SELECT count(*) FROM notes", ())).rows[0][0])


@pytest.fixture
async def db() -> AsyncIterator[PostgresDatabase]:
    require_postgres()
    with postgres_database("stalwart_kernel") as url:
        found = database(url)
        assert isinstance(found, PostgresDatabase)
        await found.open()
        try:
            await found.migrate(NOTES)
            yield found
        finally:
            await found.close()


async def test_a_write_that_raises_after_changing_rows_leaves_none_of_them(
    db: PostgresDatabase,
) -> None:
    """In one group commit: the write that fails after its first statement changed a
    row is rolled back whole, the others commit (run again after the rollback); one that
    fails having changed nothing leaves the transaction to the others."""
    results = await asyncio.gather(
        db.write(insert, "before"),
        db.write(insert_then_fail, "broken"),
        db.write(fail_first, "x"),
        db.write(insert, "after"),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[3] == 1
    assert isinstance(results[1], ValueError) and isinstance(results[2], LookupError)
    assert await db.read(count) == 2  # "broken" went with its operation


def advisory_waiters() -> Program[int]:
    """Sessions of this database waiting for an advisory lock."""
    row = (
        yield (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND "
            "database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (),
        )
    ).one()
    return int(row[0]) if row else 0


async def test_a_write_with_a_lock_waits_for_its_holder(
    db: PostgresDatabase,
) -> None:
    """``write(lock=)`` holds the advisory lock for its commit, as a blocking handle's
    exclusive transaction does: while another session holds it, the write waits, and
    nothing of it is visible."""
    import psycopg

    holder = await psycopg.AsyncConnection.connect(db.url_with_credentials, autocommit=True)
    try:
        await holder.execute("SELECT pg_advisory_lock(%s)", (LOCK,))
        writing = asyncio.ensure_future(db.write(insert, "locked", lock=LOCK))
        async with asyncio.timeout(10):
            while not await db.read(advisory_waiters):  # the batch is waiting for it
                await asyncio.sleep(0.01)
        assert not writing.done() and await db.read(count) == 0
        await holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
        async with asyncio.timeout(10):
            assert await writing == 1
        assert await db.read(count) == 1
    finally:
        await holder.close()


def advisory_held_here() -> Program[int]:
    """Advisory locks this very transaction holds, when its first statement runs."""
    row = (
        yield (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
            "pid = pg_backend_pid()",
            (),
        )
    ).one()
    return int(row[0]) if row else 0


async def test_a_named_lock_is_hashtext_of_the_name_and_held_before_any_statement(
    db: PostgresDatabase,
) -> None:
    """``write(lock="name")`` is the lock ``hashtext(name)`` -- the one SQL taking
    ``pg_advisory_xact_lock(hashtext(name))`` itself holds (an older node's capped claim),
    so a holder of that blocks it -- and the batch holds it, with its id locks, before
    its programs' first statement: a lock taken by a program mid-batch was a wait while
    the batch held row locks (a deadlock with another batch, broken after a second)."""
    import psycopg

    name = "stalwart:agent:triage"
    holder = await psycopg.AsyncConnection.connect(db.url_with_credentials, autocommit=True)
    try:
        await holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
        writing = asyncio.ensure_future(db.write(insert, "named", lock=name))
        async with asyncio.timeout(10):
            while not await db.read(advisory_waiters):
                await asyncio.sleep(0.01)
        assert not writing.done() and await db.read(count) == 0
        await holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))
        async with asyncio.timeout(10):
            assert await writing == 1
    finally:
        await holder.close()
    # held when the program's first statement runs
    assert await db.write(advisory_held_here, lock=name) == 1


def _url(url: str, *, user: str | None = None, password: str | None = None) -> str:
    """``url`` with another user and password."""
    parts = urllib.parse.urlsplit(url)
    who = user if user is not None else (parts.username or "")
    if password is not None:
        who += ":" + password
    where = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{who}@{where}"))


async def test_the_same_database_is_held_whatever_the_password(db: PostgresDatabase) -> None:
    url = db.url_with_credentials
    base, name = url.rsplit("/", 1)
    assert db.holds(url)
    assert db.holds(_url(url, password="other-secret"))
    assert not db.holds(f"{base}/{name}_other")  # another database
    assert not db.holds(f"{url}?options=-csearch_path%3Delsewhere")  # other tables, maybe
    assert not db.holds(_url(url, user="someone_else"))  # another user's rights
    assert not db.holds("sqlite:///" + name)
