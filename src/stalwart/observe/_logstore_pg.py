"""The PostgreSQL log store backend: one table shared by every node of a deployment.

Used when the log store is a ``postgresql://`` URL (the same database as the
durable store, when that is PostgreSQL), so lines from all nodes are searched in
one place. ``grep`` is ``ILIKE`` served by a ``pg_trgm`` GIN index when the
extension can be created (it is trusted since PostgreSQL 13); without it the
search scans. Each statement runs under a 5 s ``statement_timeout``.
"""

from __future__ import annotations

from typing import Any

import psycopg

from stalwart.observe._logstore import LogQuery, escape_like, filters

__all__ = ["PostgresLogs"]

_TABLE = """
CREATE TABLE IF NOT EXISTS stalwart_logs(
    id BIGSERIAL PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    level TEXT, event TEXT, node TEXT, agent_id TEXT, task_id TEXT, trace_id TEXT,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS stalwart_logs_ts ON stalwart_logs(ts);
CREATE INDEX IF NOT EXISTS stalwart_logs_agent ON stalwart_logs(agent_id, ts);
CREATE INDEX IF NOT EXISTS stalwart_logs_task ON stalwart_logs(task_id, ts);
"""
_TRGM = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS stalwart_logs_line_trgm ON stalwart_logs USING gin (line gin_trgm_ops);
"""


class PostgresLogs:
    """The ``stalwart_logs`` table (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.url, connect_timeout=5, options="-c statement_timeout=5000"
            )
        return self._conn

    def init(self) -> None:
        conn = self._connect()
        with conn.transaction():
            conn.execute(_TABLE)
        try:
            with conn.transaction():
                conn.execute(_TRGM)
        except psycopg.Error:
            pass  # no pg_trgm: grep still works, by scanning
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        conn = self._connect()
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO stalwart_logs"
                "(ts, level, event, node, agent_id, task_id, trace_id, line)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )

    def purge(self, cutoff: float, max_rows: int) -> int:
        conn = self._connect()
        with conn.transaction():
            deleted = conn.execute("DELETE FROM stalwart_logs WHERE ts < %s", (cutoff,)).rowcount
            deleted += conn.execute(
                "DELETE FROM stalwart_logs WHERE id <= "
                "(SELECT id FROM stalwart_logs ORDER BY id DESC OFFSET %s LIMIT 1)",
                (max_rows,),
            ).rowcount
        return int(deleted)

    def search(self, q: LogQuery) -> list[str]:
        where, args = filters(q, "%s")
        if q.grep:
            where.append("logs.line ILIKE %s")
            args.append(escape_like(q.grep))
        sql = "SELECT logs.line FROM stalwart_logs AS logs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY logs.id DESC LIMIT %s"
        args.append(max(1, min(q.limit, 100_000)))
        conn = self._connect()
        with conn.transaction():
            rows = conn.execute(sql, args).fetchall()
        return [str(r[0]) for r in reversed(rows)]
