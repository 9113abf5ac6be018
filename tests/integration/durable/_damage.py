"""Reach under a store to damage its records, per backend (for integrity tests)."""

from __future__ import annotations

import sqlite3
from typing import Any

from stalwart.durable import SQLiteStore, Store
from stalwart.testing import MemoryStore


def _sql(store: Store, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path, isolation_level=None, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(store.url_with_credentials, autocommit=True) as conn:  # type: ignore[attr-defined]
        cur = conn.execute(sql.replace("?", "%s"), args)
        return cur.fetchall() if cur.description else []


def read_record(store: Store, task_id: str, seq: int) -> bytes:
    if isinstance(store, MemoryStore):
        raw = store.raw_record(task_id, seq)
        assert raw is not None
        return raw
    rows = _sql(
        store, "SELECT record FROM stalwart_journal WHERE task_id = ? AND seq = ?", (task_id, seq)
    )
    return bytes(rows[0][0])


def write_record(store: Store, task_id: str, seq: int, record: bytes | None) -> None:
    if isinstance(store, MemoryStore):
        store.damage(task_id, seq, record)
        return
    _sql(
        store,
        "UPDATE stalwart_journal SET record = ? WHERE task_id = ? AND seq = ?",
        (record, task_id, seq),
    )


def delete_record(store: Store, task_id: str, seq: int) -> None:
    if isinstance(store, MemoryStore):
        store._journal[task_id].pop(seq)
        return
    _sql(store, "DELETE FROM stalwart_journal WHERE task_id = ? AND seq = ?", (task_id, seq))


def damage_task_input(store: Store, task_id: str) -> None:
    if isinstance(store, MemoryStore):
        task = store._tasks[task_id]
        assert task.input is not None
        task.input = task.input[:-3]
        return
    rows = _sql(store, "SELECT input FROM stalwart_tasks WHERE id = ?", (task_id,))
    _sql(
        store, "UPDATE stalwart_tasks SET input = ? WHERE id = ?", (bytes(rows[0][0])[:-3], task_id)
    )
