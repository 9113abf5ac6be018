"""The central log store: every line of the node and its agents, searchable.

A SQLite file by default (an FTS5 trigram index serves ``grep``), or a
``postgresql://`` URL whose ``stalwart_logs`` table every node of a deployment
shares (a ``pg_trgm`` index serves ``grep`` when the extension can be created;
without it the search scans). Queries by agent, task, trace, level and time range
use ordinary indexes. Retention keeps the newest ``retention_s`` seconds and at
most ``max_rows`` lines.

The log store opens no connection of its own: its tables are the ``logs``
component of the database kernel (:mod:`stalwart.db`) -- numbered migrations
taken under the kernel's migration lock -- and every operation (insert a batch,
purge, search) is a kernel program written once for both dialects. So the
kernel's reconnects apply: after a PostgreSQL restart the next batch opens a new
connection (an operation that did not commit is retried within its deadline).
Searching (``stalwart logs``, ``GET /v1/logs``) opens the store read-only and
never creates or migrates anything: a file or database without the tables is an
error naming it.

Writes never block the logging thread: :meth:`LogStore.sink` only enqueues; a
writer thread commits in batches. When the queue is full, or the database does
not take a batch within its deadline, the lines are dropped and counted
(``stalwart_log_lines_dropped_total``), because losing a log line is better than
stalling supervision.
"""

from __future__ import annotations

import datetime
import json
import queue
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Literal

from prometheus_client import Counter

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.db import BlockingDatabase, Component, Program, blocking
from stalwart.errors import ConfigError
from stalwart.observe import REGISTRY, LogQuery, add_log_sink, levels_from

__all__ = ["COMPONENTS", "LogStore", "log_url", "search_logs"]

LINES_STORED = Counter(
    "stalwart_log_lines_total", "Log lines written to the log store, by level", ["level"],
    registry=REGISTRY,
)  # fmt: skip
LINES_DROPPED = Counter(
    "stalwart_log_lines_dropped_total",
    "Log lines the log store dropped because its queue was full or its database refused them",
    registry=REGISTRY,
)

Dialect = Literal["sqlite", "postgres"]
_HINT = "start a node with this log store (`stalwart run --log-db URL`) once to create it"

# The tables are the ones earlier releases created (``IF NOT EXISTS``): a log store
# from before the kernel is adopted as version 1.
_SQLITE_V1 = (
    """CREATE TABLE IF NOT EXISTS logs(
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        level TEXT, event TEXT, node TEXT, agent_id TEXT, task_id TEXT, trace_id TEXT,
        line TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS logs_ts ON logs(ts)",
    "CREATE INDEX IF NOT EXISTS logs_agent ON logs(agent_id, ts)",
    "CREATE INDEX IF NOT EXISTS logs_task ON logs(task_id, ts)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(
        line, content='logs', content_rowid='id', tokenize='trigram')""",
    """CREATE TRIGGER IF NOT EXISTS logs_ai AFTER INSERT ON logs BEGIN
        INSERT INTO logs_fts(rowid, line) VALUES (new.id, new.line);
    END""",
    """CREATE TRIGGER IF NOT EXISTS logs_ad AFTER DELETE ON logs BEGIN
        INSERT INTO logs_fts(logs_fts, rowid, line) VALUES ('delete', old.id, old.line);
    END""",
)
_POSTGRES_V1 = (
    """CREATE TABLE IF NOT EXISTS stalwart_logs(
        id BIGSERIAL PRIMARY KEY,
        ts DOUBLE PRECISION NOT NULL,
        level TEXT, event TEXT, node TEXT, agent_id TEXT, task_id TEXT, trace_id TEXT,
        line TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS stalwart_logs_ts ON stalwart_logs(ts)",
    "CREATE INDEX IF NOT EXISTS stalwart_logs_agent ON stalwart_logs(agent_id, ts)",
    "CREATE INDEX IF NOT EXISTS stalwart_logs_task ON stalwart_logs(task_id, ts)",
    # pg_trgm is trusted since PostgreSQL 13, but a role may still not create it: then
    # grep scans. The block's handler is a subtransaction, so the migration goes on.
    """DO $$ BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
        CREATE INDEX IF NOT EXISTS stalwart_logs_line_trgm
            ON stalwart_logs USING gin (line gin_trgm_ops);
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'stalwart_logs: no pg_trgm (%), grep will scan', SQLERRM;
    END $$""",
)
COMPONENTS: dict[Dialect, Component] = {
    "sqlite": Component("logs", (_SQLITE_V1,), create_hint=_HINT),
    "postgres": Component("logs", (_POSTGRES_V1,), create_hint=_HINT),
}
"""The log store's tables per dialect (one component, ``logs``; the full-text index
differs: FTS5 on SQLite, pg_trgm on PostgreSQL)."""
_TABLE: dict[Dialect, str] = {"sqlite": "logs", "postgres": "stalwart_logs"}
_COLUMNS = "(ts, level, event, node, agent_id, task_id, trace_id, line)"
_ROWS_PER_INSERT = 100  # 800 parameters: under SQLite's oldest limit (999)


def log_url(path: str) -> str:
    """The database URL of a log store given as a file path or a URL."""
    if "://" in path:
        return path
    return "sqlite:///" + urllib.parse.quote(path)


# -- programs (each operation written once, for both dialects) ----------------------------
def _insert(dialect: Dialect, rows: Sequence[tuple[Any, ...]]) -> Program[int]:
    table = _TABLE[dialect]
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
        params = [value for row in chunk for value in row]
        yield (f"INSERT INTO {table} {_COLUMNS} VALUES {values}", params)
    return len(rows)


def _purge(dialect: Dialect, cutoff: float, max_rows: int) -> Program[int]:
    table = _TABLE[dialect]
    deleted = (yield (f"DELETE FROM {table} WHERE ts < ?", (cutoff,))).rowcount
    row = (yield (f"SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET ?", (max_rows,))).one()
    if row is not None:
        deleted += (yield (f"DELETE FROM {table} WHERE id <= ?", (row[0],))).rowcount
    return int(deleted)


def _escape_like(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere (``\\`` escapes)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _search_sql(dialect: Dialect, q: LogQuery) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("agent_id", q.agent_id),
        ("task_id", q.task_id),
        ("trace_id", q.trace_id),
        ("event", q.event),
    ):
        if value is not None:
            where.append(f"logs.{column} = ?")
            args.append(value)
    if q.level is not None:  # this level and above
        levels = levels_from(q.level)
        where.append(f"lower(logs.level) IN ({', '.join('?' * len(levels))})")
        args.extend(levels)
    if q.since is not None:
        where.append("logs.ts >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append("logs.ts <= ?")
        args.append(q.until)
    source = "logs" if dialect == "sqlite" else "stalwart_logs AS logs"
    if q.grep:
        if dialect == "postgres":
            where.append("logs.line ILIKE ?")  # served by the pg_trgm index when it exists
            args.append(_escape_like(q.grep))
        elif len(q.grep) >= 3:  # the trigram index; shorter patterns scan
            source = "logs JOIN logs_fts ON logs_fts.rowid = logs.id"
            where.append("logs_fts.line MATCH ?")
            args.append('"' + q.grep.replace('"', '""') + '"')
        else:
            where.append("logs.line LIKE ? ESCAPE '\\'")
            args.append(_escape_like(q.grep))
    sql = f"SELECT logs.line FROM {source}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY logs.id DESC LIMIT ?"
    args.append(max(1, min(q.limit, 100_000)))
    return sql, args


def _search(dialect: Dialect, q: LogQuery) -> Program[list[str]]:
    sql, args = _search_sql(dialect, q)
    rows = (yield (sql, args)).rows
    return [str(r[0]) for r in reversed(rows)]


def _handle(path: str, *, readonly: bool, timeout: float | None) -> BlockingDatabase:
    return blocking(
        log_url(path),
        setting="log_db",
        timeout=timeout,
        readonly=readonly,
        # Logs are not the system of record: a commit survives a process kill, and the
        # file is not read through at every open (a big log file would cost seconds).
        durability="normal",
        check_on_open=False,
    )


def search_logs(path: str, q: LogQuery, *, timeout: float | None = None) -> list[dict[str, Any]]:
    """Run ``q`` against the log store at ``path`` (a file, or a database URL).

    Read-only: never creates or migrates anything. A store without the log tables
    raises SchemaMissing; one that cannot be reached within ``timeout`` (the store
    timeout, 10 s, by default) StoreUnavailable; a wrong URL ConfigError."""
    db = _handle(path, readonly=True, timeout=timeout)
    try:
        db.require(COMPONENTS[db.dialect])
        lines = db.run(_search, db.dialect, q)
    finally:
        db.close()
    return [json.loads(line) for line in lines]


class LogStore:
    """The log store fed by the logging pipeline; see the module docstring.

    ``path`` is a SQLite file, a ``sqlite:///`` or a ``postgresql://`` URL (a wrong
    URL raises ConfigError here). :meth:`open` (or :meth:`start`) creates or migrates
    the tables. Retention runs when the writer starts, every 10 000 lines, and after
    ``purge_interval_s`` seconds without a line.
    """

    def __init__(
        self,
        path: str,
        *,
        retention_s: float = 7 * 86400.0,
        max_rows: int = 1_000_000,
        queue_size: int = 100_000,
        batch: int = 500,
        purge_interval_s: float = 300.0,
        clock: Clock = SYSTEM_CLOCK,
        timeout: float | None = None,
    ) -> None:
        if retention_s <= 0 or max_rows <= 0:
            raise ConfigError("log store retention_s and max_rows must be > 0")
        self.path = path
        self.retention_s = retention_s
        self.max_rows = max_rows
        self._batch = batch
        self.purge_interval_s = purge_interval_s
        self._clock = clock
        self._queue: queue.Queue[tuple[Any, ...] | threading.Event | None] = queue.Queue(
            maxsize=queue_size
        )
        self._thread: threading.Thread | None = None
        self._remove_sink: Callable[[], None] | None = None
        self.dropped = 0
        self._db = _handle(path, readonly=False, timeout=timeout)
        self._dialect: Dialect = self._db.dialect
        self._migrated = False
        self._lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------
    def open(self) -> None:
        """Create or migrate the tables (blocking; idempotent). Raises StoreError."""
        if not self._migrated:
            with self._lock:
                if not self._migrated:
                    self._db.migrate(COMPONENTS[self._dialect])
                    self._migrated = True

    def start(self, *, attach: bool = True) -> None:
        """Open the tables, start the writer thread and (``attach``) receive every line
        of this process."""
        if self._thread is not None:
            return
        self.open()
        self._thread = threading.Thread(target=self._writer, name="stalwart-logstore", daemon=True)
        self._thread.start()
        if attach:
            self._remove_sink = add_log_sink(self.sink)

    def sink(self, record: dict[str, Any], line: str) -> None:
        """Enqueue one record (a :data:`~stalwart.observe.LogSink`); never blocks."""
        ts = _epoch(record.get("ts"))
        row = (
            ts if ts is not None else self._clock.time(),
            _text(record.get("level")),
            _text(record.get("event")),
            _text(record.get("node")),
            _text(record.get("agent_id")),
            _text(record.get("task_id")),
            _text(record.get("trace_id")),
            line,
        )
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            LINES_DROPPED.inc()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line enqueued so far is committed; False at the deadline."""
        if self._thread is None:
            return True
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Detach, commit what is queued and stop the writer (bounded by ``timeout``)."""
        if self._remove_sink is not None:
            self._remove_sink()
            self._remove_sink = None
        if self._thread is not None:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(timeout)
            if self._thread.is_alive():
                return  # stuck on an unreachable database: it closes the handle when done
            self._thread = None
        self._db.close()  # idempotent; reopened by a later query

    def _writer(self) -> None:
        written = 0
        try:
            self._purge()
            while True:
                try:
                    item = self._queue.get(timeout=self.purge_interval_s)
                except queue.Empty:  # a quiet node still forgets old lines
                    self._purge()
                    continue
                rows: list[tuple[Any, ...]] = []
                markers: list[threading.Event] = []
                stop = False
                while True:
                    if item is None:
                        stop = True
                    elif isinstance(item, threading.Event):
                        markers.append(item)
                    else:
                        rows.append(item)
                    if len(rows) >= self._batch:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if rows:
                    self._insert(rows)
                    written += len(rows)
                    if written >= 10_000:
                        written = 0
                        self._purge()
                for marker in markers:
                    marker.set()
                if stop:
                    return
        finally:
            self._db.close()

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            self._db.run(_insert, self._dialect, rows)
        except Exception:  # unreachable past the deadline, or full: drop and count
            # (the kernel opens a new connection for the next batch)
            self.dropped += len(rows)
            LINES_DROPPED.inc(len(rows))
            return
        for row in rows:
            LINES_STORED.labels(row[1] or "unknown").inc()

    def purge(self) -> int:
        """Apply retention now (the writer also does it on its own); rows deleted."""
        return self._purge()

    def _purge(self) -> int:
        try:
            self.open()
            return self._db.run(
                _purge, self._dialect, self._clock.time() - self.retention_s, self.max_rows
            )
        except Exception:
            return 0

    # -- reading ------------------------------------------------------------------------
    def query(self, q: LogQuery) -> list[dict[str, Any]]:
        """The matching lines as dicts, oldest first (the newest ``q.limit`` of them)."""
        self.open()
        return [json.loads(line) for line in self._db.run(_search, self._dialect, q)]


def _epoch(ts: Any) -> float | None:
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, str):
        try:
            return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
