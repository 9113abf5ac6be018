"""The fence on PostgreSQL holds even for a write whose transaction is still open.

A writer that passed its fence just before a takeover (then went silent: cut off,
paused) must not be able to commit into the new owner's journal afterwards.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from stalwart.durable import JournalEntry, PostgresStore
from stalwart.durable import _sql as q
from stalwart.durable._base import encode_entry

from .conftest import _pg_reset

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store(pg_database):
    _pg_reset(pg_database)
    s = PostgresStore(pg_database, idle_in_transaction_timeout=1.0)
    await s.open()
    yield s
    await s.close()


async def test_a_takeover_waits_for_an_open_fenced_write_and_then_sees_it(store, pg_database):
    await store.create_task("w", None, task_id="t")
    old = await store.acquire("old", 30, task_id="t")
    assert old is not None
    entry = encode_entry("t", JournalEntry(0, "step", "a", 1))
    writer = await psycopg.AsyncConnection.connect(pg_database, connect_timeout=5)
    try:
        await writer.execute(q.pg(q.APPEND), ("t", 0, "step", "a", entry, "t", "old", old.token))
        # the old owner's write is in, not committed; a forced takeover must wait for it
        takeover = asyncio.create_task(store.acquire("new", 30, task_id="t", force=True))
        done, _ = await asyncio.wait([takeover], timeout=0.5)
        assert not done, "the takeover went ahead under an open fenced write"
        await writer.commit()  # the write was legitimate: it passed its fence first
        async with asyncio.timeout(10):
            new = await takeover
    finally:
        await writer.close()
    assert new is not None and new.token == old.token + 1
    journal = await store.load_journal("t")
    assert [e.seq for e in journal.entries] == [0]  # the new owner replays it, not redoes it


async def test_a_silent_writer_is_cut_off_and_its_write_never_lands(store, pg_database):
    await store.create_task("w", None, task_id="t")
    old = await store.acquire("old", 30, task_id="t")
    assert old is not None
    entry = encode_entry("t", JournalEntry(0, "step", "a", 1))
    writer = await psycopg.AsyncConnection.connect(pg_database, connect_timeout=5)
    await writer.execute("SET idle_in_transaction_session_timeout = 1000")
    await writer.execute(q.pg(q.APPEND), ("t", 0, "step", "a", entry, "t", "old", old.token))
    # ...and the writer goes silent (partition): its session is ended, the takeover proceeds
    async with asyncio.timeout(15):
        new = await store.acquire("new", 30, task_id="t", force=True)
    assert new is not None
    with pytest.raises(psycopg.Error, match="idle-in-transaction"):
        await writer.commit()  # too late: the server ended the transaction
    await writer.close()
    assert (await store.load_journal("t")).entries == []
