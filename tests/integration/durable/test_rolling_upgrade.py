"""Rolling upgrades: a node never claims a task that a newer stalwart has touched."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from stalwart.durable import FORMAT_VERSION, PostgresStore, SQLiteStore
from stalwart.testing import MemoryStore

from .conftest import _pg_reset


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"])
async def store_and_marker(request, tmp_path):
    if request.param == "sqlite":
        path = str(tmp_path / "u.db")
        store = SQLiteStore(path)
        await store.open()

        def mark(task_id: str) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(
                    "UPDATE stalwart_tasks SET needs_format = ? WHERE id = ?",
                    (FORMAT_VERSION + 1, task_id),
                )

    elif request.param == "postgres":
        url = request.getfixturevalue("pg_database")
        _pg_reset(url)
        store = PostgresStore(url)
        await store.open()

        def mark(task_id: str) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE stalwart_tasks SET needs_format = %s WHERE id = %s",
                    (FORMAT_VERSION + 1, task_id),
                )

    else:
        store = MemoryStore()
        await store.open()

        def mark(task_id: str) -> None:
            store.raw_sql(
                "UPDATE stalwart_tasks SET needs_format = ? WHERE id = ?",
                (FORMAT_VERSION + 1, task_id),
            )

    yield store, mark
    await store.close()


async def test_a_task_touched_by_a_newer_node_is_left_for_one(store_and_marker):
    store, mark_newer = store_and_marker
    await store.create_task("a", 1, task_id="new-format")
    await store.create_task("a", 2, task_id="old-format")
    mark_newer("new-format")
    lease = await store.acquire("old-node", 30, agent="a")
    assert lease is not None and lease.task_id == "old-format"
    assert await store.acquire("old-node", 30, agent="a") is None
    assert await store.acquire("old-node", 30, task_id="new-format") is None
    assert await store.acquire("old-node", 30, task_id="new-format", force=True) is None
    assert (await store.get_task("new-format")).status == "pending"  # untouched, not failed
