"""The database kernel (DESIGN.md layer 0½): one place for every database connection.

It owns URL parsing, connections (the SQLite writer thread with group commit, the
PostgreSQL pool), reconnects and retries within each operation's deadline, error
mapping into :mod:`stalwart.errors`, and numbered migrations per component under
a lock. It owns no tables: every package that stores (the durable store, the
guard's ledgers...) declares its tables as a :class:`Component` and writes each
operation once, as a :data:`Program`, which both dialects run. See
``docs/durable.md`` ("The database layer").

PostgreSQL support (psycopg) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stalwart.db._base import Database, backoff
from stalwart.db._blocking import BlockingDatabase, BlockingPostgres, BlockingSQLite, blocking
from stalwart.db._fork import FORK_GATE, ForkGate
from stalwart.db._migrate import MIGRATION_LOCK, Component, MigrationStatement, render
from stalwart.db._program import Program, Result, Stmt, drive_sync, is_one_write, one_write, pg_sql
from stalwart.db._sqlite import DURABILITY_LEVELS, SQLiteDatabase, map_sqlite_error
from stalwart.db._url import FORMS, DatabaseURL, parse_url, redact

if TYPE_CHECKING:
    from stalwart.db._postgres import PostgresDatabase

__all__ = [
    "DURABILITY_LEVELS",
    "FORK_GATE",
    "FORMS",
    "MIGRATION_LOCK",
    "BlockingDatabase",
    "BlockingPostgres",
    "BlockingSQLite",
    "Component",
    "Database",
    "DatabaseURL",
    "ForkGate",
    "MigrationStatement",
    "PostgresDatabase",
    "Program",
    "Result",
    "SQLiteDatabase",
    "Stmt",
    "backoff",
    "blocking",
    "database",
    "drive_sync",
    "is_one_write",
    "map_sqlite_error",
    "one_write",
    "parse_url",
    "pg_sql",
    "redact",
    "render",
]


def database(url: str, *, setting: str = "durable.store_url", **options: Any) -> Database:
    """The :class:`Database` for ``url`` (not yet opened); options go to the dialect."""
    parsed = parse_url(url, setting=setting)
    if parsed.dialect == "sqlite":
        return SQLiteDatabase(parsed.target, **options)
    from stalwart.db._postgres import PostgresDatabase

    return PostgresDatabase(parsed.target, **options)


def __getattr__(name: str) -> Any:
    # psycopg costs ~100 ms of start-up that SQLite-only processes should not pay.
    if name == "PostgresDatabase":
        from stalwart.db._postgres import PostgresDatabase

        return PostgresDatabase
    raise AttributeError(f"module 'stalwart.db' has no attribute {name!r}")
