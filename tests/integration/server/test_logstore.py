"""The log store on both dialects (SQLite with FTS5, PostgreSQL with pg_trgm), through the
database kernel: filters and retention, read-only searches that never create the tables,
the kernel's migration record, a log store from before the kernel adopted, and lines
written across a PostgreSQL restart (a private server, restarted for real)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator

import psycopg
import pytest

from stalwart.cli import main
from stalwart.errors import ConfigError, SchemaMissing
from stalwart.observe import REGISTRY, LogQuery
from stalwart.server import LogStore, search_logs
from stalwart.testing import FakeClock, postgres_database, postgres_reachable
from stalwart.testing._pgserver import PostgresServer, pg_binaries

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable")
    with postgres_database("stalwart_logs") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def where(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "logs.db")
        return
    yield request.getfixturevalue("pg_url")


def put(store: LogStore, ts: float, agent: str, task: str, text: str, level: str = "info"):
    record = {"ts": ts, "level": level, "event": "e", "agent_id": agent, "task_id": task,
              "text": text}  # fmt: skip
    store.sink(record, json.dumps(record))


def test_filters_grep_limit_and_retention(where):
    clock = FakeClock(wall_start=1_800_000_000.0)
    store = LogStore(where, retention_s=100, max_rows=3, clock=clock)
    store.start(attach=False)
    try:
        now = clock.time()
        put(store, now - 500, "a", "t1", "old line")
        put(store, now - 50, "a", "t1", "Refund requested for order 42")
        put(store, now - 40, "b", "t2", "refund denied 100% of_it", "warning")
        put(store, now - 30, "a", "t3", "hi")
        assert store.flush()
        q = store.query
        assert len(q(LogQuery())) == 4
        assert [r["text"] for r in q(LogQuery(agent_id="a", since=now - 100))] == [
            "Refund requested for order 42", "hi",
        ]  # fmt: skip
        assert len(q(LogQuery(grep="REFUND"))) == 2  # case-insensitive substring
        assert len(q(LogQuery(grep="hi"))) == 1  # a short pattern scans
        assert len(q(LogQuery(grep="100%"))) == 1  # LIKE wildcards are data
        assert len(q(LogQuery(grep="f_i"))) == 1
        assert len(q(LogQuery(grep='"quoted" 42'))) == 0  # quotes are data, not syntax
        assert len(q(LogQuery(level="warning", task_id="t2"))) == 1
        assert len(q(LogQuery(task_id="t1", until=now - 100))) == 1
        assert [r["text"] for r in q(LogQuery(limit=1))] == ["hi"]
        assert search_logs(where, LogQuery(trace_id="none")) == []
        assert len(search_logs(where, LogQuery(grep="refund"))) == 2  # read-only, same rows
        assert store.purge() == 1  # the 500 s old line (max_rows 3 keeps the rest)
        assert next(r["text"] for r in q(LogQuery())) == "Refund requested for order 42"
    finally:
        store.close()
    assert store.dropped == 0


def test_level_keeps_that_level_and_above(where, capsys):
    """`stalwart logs --level warning` finds warnings, errors and critical lines, as a log
    level filter does, not warnings alone."""
    store = LogStore(where)
    store.start(attach=False)
    try:
        every = ("debug", "info", "warning", "error", "critical", "ERROR")
        for i, level in enumerate(every):
            put(store, 1_800_000_000.0 + i, "a", f"t{i}", f"{level} line", level)
        assert store.flush()

        def texts(level: str) -> list[str]:
            return [r["text"] for r in store.query(LogQuery(level=level))]

        assert texts("debug") == [f"{level} line" for level in every]
        assert texts("warning") == ["warning line", "error line", "critical line", "ERROR line"]
        assert texts("Error") == ["error line", "critical line", "ERROR line"]
        assert texts("critical") == ["critical line"]
        with pytest.raises(ValueError, match="level must be one of debug, info"):
            store.query(LogQuery(level="loud"))
        capsys.readouterr()
        assert main(["logs", "--db", where, "--level", "error"]) == 0  # the CLI, the same
        printed = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()]
        assert printed == ["error line", "critical line", "ERROR line"]
    finally:
        store.close()


def test_a_batch_of_many_lines_is_stored_whole(where):
    store = LogStore(where, batch=500)
    store.start(attach=False)
    try:
        for i in range(1234):  # more than one batch, and batches over many INSERT chunks
            put(store, 1_800_000_000.0 + i, "a", f"t{i}", f"line {i}")
        assert store.flush(timeout=30)
        rows = store.query(LogQuery(limit=100_000))
        assert [r["text"] for r in rows] == [f"line {i}" for i in range(1234)]
    finally:
        store.close()


def _pg_tables(url: str) -> set[str]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_searching_never_creates_the_tables_sqlite(tmp_path, capsys):
    missing = tmp_path / "typo.db"
    with pytest.raises(SchemaMissing, match="does not exist"):
        search_logs(str(missing), LogQuery())
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a database file without the log tables
    with pytest.raises(SchemaMissing, match="has no logs schema"):
        search_logs(f"sqlite:///{empty}", LogQuery())
    code = main(["logs", "--db", str(empty)])
    err = capsys.readouterr().err
    assert code == 2 and "has no logs schema" in err and "Traceback" not in err, err
    with sqlite3.connect(empty) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


@pytest.mark.postgres
def test_searching_never_creates_the_tables_postgres(pg_url, capsys):
    with pytest.raises(SchemaMissing, match="has no logs schema"):
        search_logs(pg_url, LogQuery())
    code = main(["logs", "--db", pg_url])
    err = capsys.readouterr().err
    assert code == 2 and "has no logs schema" in err and "Traceback" not in err, err
    assert _pg_tables(pg_url) == set()
    store = LogStore(pg_url)
    store.open()  # the writer's side creates them, recorded as the component's version
    store.close()
    assert {"stalwart_logs", "stalwart_meta"} <= _pg_tables(pg_url)
    with psycopg.connect(pg_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT value FROM stalwart_meta WHERE key = 'schema_version:logs'"
        ).fetchone()
    assert row == ("1",)
    assert search_logs(pg_url, LogQuery()) == []


@pytest.mark.parametrize(
    ("db", "words"),
    [
        ("bogus://x", "unsupported scheme 'bogus'"),
        ("postgresql://", "names no host and no database"),
        ("sqlite://x.db", "names no file"),
        ("postgresql://u:hunter2@127.0.0.1:1/x", "cannot read the log store"),
    ],
)
def test_a_bad_url_is_exit_2_with_a_clear_error(capsys, db, words):
    code = main(["logs", "--db", db])
    err = capsys.readouterr().err
    assert code == 2 and words in err, err
    assert "Traceback" not in err and "hunter2" not in err, err


def test_a_wrong_url_is_refused_when_the_store_is_built():
    with pytest.raises(ConfigError, match="log_db"):
        LogStore("mysql://h/db")


def test_a_log_store_from_before_the_kernel_is_adopted(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # what earlier releases created, and one line
        conn.execute(
            "CREATE TABLE logs(id INTEGER PRIMARY KEY, ts REAL NOT NULL, level TEXT, "
            "event TEXT, node TEXT, agent_id TEXT, task_id TEXT, trace_id TEXT, "
            "line TEXT NOT NULL)"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE logs_fts USING fts5(line, content='logs', "
            "content_rowid='id', tokenize='trigram')"
        )
        conn.execute(
            "CREATE TRIGGER logs_ai AFTER INSERT ON logs BEGIN "
            "INSERT INTO logs_fts(rowid, line) VALUES (new.id, new.line); END"
        )
        conn.execute(
            "INSERT INTO logs(ts, level, line) VALUES (?, 'info', ?)",
            (time.time() - 60, json.dumps({"text": "from the old release"})),
        )
    store = LogStore(str(path))
    store.start(attach=False)
    try:
        put(store, time.time(), "a", "t", "from this release")
        assert store.flush()
    finally:
        store.close()
    rows = search_logs(str(path), LogQuery(grep="release"))
    assert [r["text"] for r in rows] == ["from the old release", "from this release"]
    with sqlite3.connect(path) as conn:
        meta = conn.execute("SELECT value FROM stalwart_meta WHERE key = 'schema_version:logs'")
        assert meta.fetchall() == [("1",)]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    if pg_binaries() is None:
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed")
    with PostgresServer() as server:
        yield server


def _retries() -> float:
    return REGISTRY.get_sample_value("stalwart_db_retries_total", {"dialect": "postgres"}) or 0.0


def test_lines_written_across_a_postgres_restart_and_kill_are_kept(pg_server):
    store = LogStore(pg_server.url, timeout=20)
    store.start(attach=False)
    try:
        n = 0
        for fault in ("before", "restart", "kill"):
            retries = _retries()
            if fault == "restart":
                pg_server.restart()
            elif fault == "kill":
                pg_server.kill()
                pg_server.start()
            for _ in range(50):  # the first batch meets the connection the fault broke
                put(store, 1_800_000_000.0 + n, "a", fault, f"line {n}")
                n += 1
            assert store.flush(timeout=30), fault
            assert store.dropped == 0, fault
            if fault != "before":  # the broken connection was met, and replaced
                assert _retries() > retries, fault
        rows = search_logs(pg_server.url, LogQuery(limit=100_000))
        assert [r["text"] for r in rows] == [f"line {i}" for i in range(n)]
        assert len(store.query(LogQuery(task_id="kill"))) == 50
    finally:
        store.close()
