"""The central log store: every line of the node and its agents, searchable.

SQLite with an FTS5 trigram index by default (one file, no server): queries by
agent, task, trace, level and time range use ordinary indexes, and ``grep`` is
a substring search the trigram index answers without scanning (patterns under
three characters fall back to a scan). Retention keeps the newest
``retention_s`` seconds and at most ``max_rows`` lines.

Writes never block the logging thread: :meth:`LogStore.sink` only enqueues; a
writer thread commits in batches. When the queue is full the line is dropped and
counted (``stalwart_log_lines_dropped_total``), because losing a log line is
better than stalling supervision. Readers (the CLI, ``GET /v1/logs``) open their
own connection; WAL mode lets them read while the writer writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Counter

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ConfigError
from stalwart.observe._logging import add_log_sink
from stalwart.observe._metrics import REGISTRY

__all__ = ["LogQuery", "LogStore", "parse_since", "search"]

LINES_STORED = Counter(
    "stalwart_log_lines_total", "Log lines written to the log store, by level", ["level"],
    registry=REGISTRY,
)  # fmt: skip
LINES_DROPPED = Counter(
    "stalwart_log_lines_dropped_total",
    "Log lines the log store dropped because its queue was full",
    registry=REGISTRY,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs(
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    level TEXT, event TEXT, node TEXT, agent_id TEXT, task_id TEXT, trace_id TEXT,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_ts ON logs(ts);
CREATE INDEX IF NOT EXISTS logs_agent ON logs(agent_id, ts);
CREATE INDEX IF NOT EXISTS logs_task ON logs(task_id, ts);
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(
    line, content='logs', content_rowid='id', tokenize='trigram'
);
CREATE TRIGGER IF NOT EXISTS logs_ai AFTER INSERT ON logs BEGIN
    INSERT INTO logs_fts(rowid, line) VALUES (new.id, new.line);
END;
CREATE TRIGGER IF NOT EXISTS logs_ad AFTER DELETE ON logs BEGIN
    INSERT INTO logs_fts(logs_fts, rowid, line) VALUES ('delete', old.id, old.line);
END;
"""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, *, now: float) -> float:
    """``10m``/``2h``/``30s``/``1d`` ago, or an ISO-8601 time, as epoch seconds.

    Raises :class:`ValueError` with a message a user can act on.
    """
    text = text.strip()
    if text and text[-1] in _UNITS and text[:-1].replace(".", "", 1).isdigit():
        return now - float(text[:-1]) * _UNITS[text[-1]]
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration (10m, 2h, 30s, 1d) or an ISO-8601 time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _epoch(ts: Any) -> float | None:
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, str):
        try:
            return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class LogQuery:
    """Filters of a log search; every given filter must match (AND).

    ``since``/``until`` are epoch seconds; ``grep`` is a case-insensitive substring
    of the JSON line; ``limit`` caps the rows (newest ``limit`` lines, returned
    oldest first).
    """

    agent_id: str | None = None
    task_id: str | None = None
    trace_id: str | None = None
    level: str | None = None
    event: str | None = None
    since: float | None = None
    until: float | None = None
    grep: str | None = None
    limit: int = 1000


class LogStore:
    """A SQLite (FTS5) log store fed by the logging pipeline; see the module docstring.

    Retention runs when the writer starts, every 10 000 lines, and after
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
        self._backend = backend_for(path)
        self._backend.init()

    # -- writing ------------------------------------------------------------------------
    def start(self, *, attach: bool = True) -> None:
        """Start the writer thread and (``attach``) receive every line of this process."""
        if self._thread is not None:
            return
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
            self._thread = None

    def _writer(self) -> None:
        backend = self._backend
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
            backend.close()

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        try:
            self._backend.insert(rows)
        except Exception:  # store unreachable or full: drop, count, reconnect next time
            self.dropped += len(rows)
            LINES_DROPPED.inc(len(rows))
            self._backend.close()
            return
        for row in rows:
            LINES_STORED.labels(row[1] or "unknown").inc()

    def purge(self) -> int:
        """Apply retention now (the writer also does it on its own); rows deleted."""
        return self._purge()

    def _purge(self) -> int:
        try:
            return self._backend.purge(self._clock.time() - self.retention_s, self.max_rows)
        except Exception:
            self._backend.close()
            return 0

    # -- reading ------------------------------------------------------------------------
    def query(self, q: LogQuery) -> list[dict[str, Any]]:
        """The matching lines as dicts, oldest first (the newest ``q.limit`` of them)."""
        return search(self.path, q)


class LogBackend(Protocol):
    """Where lines are kept: SQLite (``SqliteLogs``) or PostgreSQL (``PostgresLogs``)."""

    def init(self) -> None: ...

    def close(self) -> None: ...

    def insert(self, rows: list[tuple[Any, ...]]) -> None: ...

    def purge(self, cutoff: float, max_rows: int) -> int: ...

    def search(self, q: LogQuery) -> list[str]: ...


def backend_for(path: str) -> LogBackend:
    """The backend for a file path or ``sqlite:///`` URL, or a ``postgresql://`` URL."""
    if path.startswith(("postgresql://", "postgres://")):
        from stalwart.observe._logstore_pg import PostgresLogs

        return PostgresLogs(path)
    if path.startswith("sqlite:///"):
        path = path[len("sqlite:///") :]
    return SqliteLogs(path)


def search(path: str, q: LogQuery) -> list[dict[str, Any]]:
    """Run ``q`` against the log store at ``path`` (a file, or a PostgreSQL URL)."""
    backend = backend_for(path)
    try:
        return [json.loads(line) for line in backend.search(q)]
    finally:
        backend.close()


def escape_like(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere (``\\`` escapes)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def filters(q: LogQuery, mark: str) -> tuple[list[str], list[Any]]:
    """WHERE clauses (with ``mark`` placeholders) for every filter of ``q`` but ``grep``."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("agent_id", q.agent_id),
        ("task_id", q.task_id),
        ("trace_id", q.trace_id),
        ("level", q.level.lower() if q.level else None),
        ("event", q.event),
    ):
        if value is not None:
            where.append(f"logs.{column} = {mark}")
            args.append(value)
    if q.since is not None:
        where.append(f"logs.ts >= {mark}")
        args.append(q.since)
    if q.until is not None:
        where.append(f"logs.ts <= {mark}")
        args.append(q.until)
    return where, args


class SqliteLogs:
    """The SQLite backend: one file, WAL, an FTS5 trigram index for ``grep``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn = conn
        return self._conn

    def init(self) -> None:
        self._connect().executescript(_SCHEMA)
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        conn = self._connect()
        with conn:
            conn.executemany(
                "INSERT INTO logs(ts, level, event, node, agent_id, task_id, trace_id, line)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def purge(self, cutoff: float, max_rows: int) -> int:
        conn = self._connect()
        with conn:
            deleted = conn.execute("DELETE FROM logs WHERE ts < ?", (cutoff,)).rowcount
            row = conn.execute(
                "SELECT id FROM logs ORDER BY id DESC LIMIT 1 OFFSET ?", (max_rows,)
            ).fetchone()
            if row is not None:
                deleted += conn.execute("DELETE FROM logs WHERE id <= ?", (row[0],)).rowcount
        return int(deleted)

    def search(self, q: LogQuery) -> list[str]:
        """Matching lines, oldest first (read-only connection of its own)."""
        where, args = filters(q, "?")
        source = "logs"
        if q.grep:
            if len(q.grep) >= 3:
                source = "logs JOIN logs_fts ON logs_fts.rowid = logs.id"
                where.append("logs_fts.line MATCH ?")
                args.append('"' + q.grep.replace('"', '""') + '"')
            else:
                where.append("logs.line LIKE ? ESCAPE '\\'")
                args.append(escape_like(q.grep))
        sql = f"SELECT logs.line FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY logs.id DESC LIMIT ?"
        args.append(max(1, min(q.limit, 100_000)))
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = conn.execute(sql, args).fetchall()
        finally:
            conn.close()
        return [r[0] for r in reversed(rows)]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
