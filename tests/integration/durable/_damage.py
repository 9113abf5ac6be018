"""Reach under a store to damage its records, per backend (for integrity tests).

The memory store is a SQLiteStore on a private file, so the SQLite path serves it."""

from __future__ import annotations

import sqlite3
from typing import Any

from stalwart.durable import SQLiteStore, Store


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
    rows = _sql(
        store, "SELECT record FROM stalwart_journal WHERE task_id = ? AND seq = ?", (task_id, seq)
    )
    return bytes(rows[0][0])


def write_record(store: Store, task_id: str, seq: int, record: bytes | None) -> None:
    _sql(
        store,
        "UPDATE stalwart_journal SET record = ? WHERE task_id = ? AND seq = ?",
        (record, task_id, seq),
    )


def delete_record(store: Store, task_id: str, seq: int) -> None:
    _sql(store, "DELETE FROM stalwart_journal WHERE task_id = ? AND seq = ?", (task_id, seq))


def damage_task_input(store: Store, task_id: str) -> None:
    rows = _sql(store, "SELECT input FROM stalwart_tasks WHERE id = ?", (task_id,))
    _sql(
        store, "UPDATE stalwart_tasks SET input = ? WHERE id = ?", (bytes(rows[0][0])[:-3], task_id)
    )
