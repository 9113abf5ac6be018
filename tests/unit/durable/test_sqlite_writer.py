"""SQLite errors map onto the stalwart taxonomy, naming the file."""

from __future__ import annotations

import sqlite3

from stalwart.db import map_sqlite_error
from stalwart.durable._schema import SCHEMA_VERSION, migrations
from stalwart.errors import CorruptRecord, StoreError, StoreUnavailable


def test_error_mapping() -> None:
    locked = map_sqlite_error(sqlite3.OperationalError("database is locked"), "/x.db")
    assert isinstance(locked, StoreUnavailable) and "/x.db" in str(locked)
    assert locked.retryable == "retryable"
    full = map_sqlite_error(sqlite3.OperationalError("database or disk is full"), "/x.db")
    assert isinstance(full, StoreUnavailable) and full.retryable == "retryable"
    damaged = map_sqlite_error(sqlite3.DatabaseError("database disk image is malformed"), "/x.db")
    assert isinstance(damaged, CorruptRecord)
    other = map_sqlite_error(sqlite3.IntegrityError("NOT NULL constraint failed"), "/x.db")
    assert type(other) is StoreError and "IntegrityError" in str(other)


def test_migrations_render_for_both_dialects() -> None:
    for dialect in ("sqlite", "postgres"):
        steps = migrations(dialect)  # type: ignore[arg-type]
        assert len(steps) == SCHEMA_VERSION
        text = " ".join(steps[0])
        assert "{" not in text and "stalwart_journal" in text
    assert "BYTEA" in " ".join(migrations("postgres")[0])
    assert "WITHOUT ROWID" in " ".join(migrations("sqlite")[0])
