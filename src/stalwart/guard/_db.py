"""Where the guard keeps state that must survive restarts: the app's store database.

The spend ledger and the approval queue are small tables (``guard_*``) in the
same database as the durable store — the SQLite file (``sqlite:///path.db``)
or the PostgreSQL database (``postgresql://…``) — written through their own
connection. Keeping them beside the store's schema rather than in it keeps
the guard below the durable layer (it imports no store code); both live and
die with the store's database, and every node of a cluster sharing one
PostgreSQL store shares one ledger.

Reservations must check and take budget atomically across processes and
nodes: :meth:`GuardDB.exclusive` opens a transaction that serializes them —
``BEGIN IMMEDIATE`` on SQLite (the file's write lock), a transaction-scoped
advisory lock on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from stalwart.errors import ConfigError

__all__ = ["GuardDB", "connect", "sqlite_path"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS guard_spend (
        scope TEXT NOT NULL, key TEXT NOT NULL, period TEXT NOT NULL,
        spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0, tokens BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, key, period))""",
    """CREATE TABLE IF NOT EXISTS guard_reservations (
        id TEXT PRIMARY KEY, scope TEXT NOT NULL, key TEXT NOT NULL, period TEXT NOT NULL,
        amount_usd DOUBLE PRECISION NOT NULL, created DOUBLE PRECISION NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS guard_reservations_key
        ON guard_reservations (scope, key, period)""",
    """CREATE TABLE IF NOT EXISTS guard_approvals (
        id TEXT PRIMARY KEY, task_id TEXT NOT NULL, agent TEXT NOT NULL, tool TEXT NOT NULL,
        arguments TEXT NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, decided DOUBLE PRECISION, decided_by TEXT)""",
)
_ADVISORY_KEY = 0x5354_4C57_4755_4152 & 0x7FFF_FFFF_FFFF_FFFF  # "STLWGUAR", a bigint
_lock = threading.Lock()


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///path`` URL (or a plain path)."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]  # as the durable store reads it
    if "://" in url:
        raise ConfigError(f"unsupported guard database URL {url!r}")
    return url


class GuardDB:
    """One connection to the guard tables, SQLite or PostgreSQL, with ``?`` parameters."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            import psycopg

            try:
                self._conn: Any = psycopg.connect(url, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise ConfigError(f"cannot reach the guard tables' database: {exc}") from None
        else:
            path = sqlite_path(url)
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA busy_timeout = 30000")
        with _lock:
            for statement in _SCHEMA:
                self._conn.execute(statement)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns its cursor (``fetchone``, ``fetchall``, ``rowcount``)."""
        if self.postgres:
            sql = sql.replace("?", "%s")
        return self._conn.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self.execute(sql, row)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """A transaction that no other writer of the guard tables runs beside."""
        if self.postgres:
            self._conn.execute("BEGIN")
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_KEY,))
        else:
            self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()


def connect(url: str) -> GuardDB:
    """The guard tables in the database of ``url`` (created if needed)."""
    return GuardDB(url)
