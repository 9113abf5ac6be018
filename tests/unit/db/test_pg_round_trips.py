"""PostgreSQL writes and their transactions: a one-write program alone in its group
commit is committed by its own statement; anything else runs in one transaction block
(sent in pipeline mode), where a failing program takes only itself down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tests._postgres import require_postgres

from stalwart.db import Component, Database, PostgresDatabase, Program, database, one_write
from stalwart.db._metrics import RETRIES
from stalwart.errors import StoreError

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

NOTES = Component("notes_rt", (("CREATE TABLE notes (id TEXT PRIMARY KEY)",),))


def _note_and_transaction(note_id: str) -> Program[tuple[int, bool]]:
    """Insert a note (the one write); then whether the statement after it still runs in
    the insert's transaction (that transaction has an id: it wrote)."""
    changed = yield ("INSERT INTO notes (id) VALUES (?) ON CONFLICT DO NOTHING", (note_id,))
    row = (yield ("SELECT pg_current_xact_id_if_assigned()", ())).one()
    return changed.rowcount, row is not None and row[0] is not None


note_alone = one_write(_note_and_transaction)


def plain_note(note_id: str) -> Program[tuple[int, bool]]:
    return (yield from _note_and_transaction(note_id))


def broken() -> Program[None]:
    yield ("SELECT no_such_column FROM notes", ())


def count() -> Program[int]:
    return int((yield ("SELECT count(*) FROM notes", ())).rows[0][0])


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    from stalwart.testing import postgres_database

    require_postgres()
    with postgres_database("stalwart_round_trips") as url:
        db = database(url)
        await db.open()
        try:
            await db.migrate(NOTES)
            yield db
        finally:
            await db.close()


async def test_a_one_write_program_alone_is_committed_by_its_own_statement(
    db: Database,
) -> None:
    # the read after the insert is a transaction of its own: the insert already committed
    assert await db.write(note_alone, "a") == (1, False)
    # run again, it finds its write done (the retry after a lost answer)
    assert await db.write(note_alone, "a") == (0, False)
    # a lazy write needs its transaction block (SET LOCAL synchronous_commit = off)
    assert await db.write(note_alone, "b", lazy=True) == (1, True)
    # an ordinary program always runs in one
    assert await db.write(plain_note, "c") == (1, True)
    assert await db.read(count) == 3


async def test_programs_that_share_a_group_commit_share_one_transaction(db: Database) -> None:
    # queued in one turn of the event loop: one batch, even of one-write programs
    both = await asyncio.gather(db.write(note_alone, "a"), db.write(note_alone, "b"))
    assert both == [(1, True), (1, True)]
    assert await db.read(count) == 2


async def test_a_failing_statement_takes_only_its_program_down(db: Database) -> None:
    failed, written = await asyncio.gather(
        db.write(broken), db.write(plain_note, "a"), return_exceptions=True
    )
    assert isinstance(failed, StoreError) and "no_such_column" in str(failed)
    assert written == (1, True)  # rolled back with the batch, then run again
    # the connections are clean: the next writes and reads go through
    assert await db.write(note_alone, "b") == (1, False)
    assert await db.read(count) == 2


async def test_a_one_write_whose_connection_the_server_dropped_is_run_again(
    db: Database,
) -> None:
    import psycopg

    assert isinstance(db, PostgresDatabase)
    assert await db.write(note_alone, "a") == (1, False)  # a pooled connection now idles
    with psycopg.connect(db.url_with_credentials, autocommit=True, connect_timeout=5) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    before = RETRIES.labels(dialect="postgres")._value.get()
    assert await db.write(note_alone, "b") == (1, False)  # retried on a new connection
    assert RETRIES.labels(dialect="postgres")._value.get() > before
    assert await db.read(count) == 2
