"""The log store contract on both backends: SQLite (FTS5) and PostgreSQL (pg_trgm)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from stalwart.observe import LogQuery, LogStore, search
from stalwart.testing import FakeClock

PG_ADMIN = os.environ.get("STALWART_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def where(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "logs.db")
        return
    name = f"stalwart_logs_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_filters_grep_limit_and_retention(where):
    clock = FakeClock(wall_start=1_800_000_000.0)
    store = LogStore(where, retention_s=100, max_rows=3, clock=clock)
    store.start(attach=False)
    try:
        now = clock.time()
        rows = [
            (now - 500, "a", "t1", "old line", "info"),
            (now - 50, "a", "t1", "Refund requested for order 42", "info"),
            (now - 40, "b", "t2", "refund denied 100% of_it", "warning"),
            (now - 30, "a", "t3", "hi", "info"),
        ]
        for ts, agent, task, text, level in rows:
            record = {"ts": ts, "level": level, "event": "e", "agent_id": agent,
                      "task_id": task, "text": text}  # fmt: skip
            store.sink(record, json.dumps(record))
        assert store.flush()
        q = store.query
        assert len(q(LogQuery())) == 4
        assert [r["text"] for r in q(LogQuery(agent_id="a", since=now - 100))] == [
            "Refund requested for order 42", "hi",
        ]  # fmt: skip
        assert len(q(LogQuery(grep="REFUND"))) == 2  # case-insensitive substring
        assert len(q(LogQuery(grep="100%"))) == 1  # LIKE wildcards are data
        assert len(q(LogQuery(grep="f_i"))) == 1
        assert len(q(LogQuery(level="warning", task_id="t2"))) == 1
        assert [r["text"] for r in q(LogQuery(limit=1))] == ["hi"]
        assert search(where, LogQuery(trace_id="none")) == []
        assert store.purge() == 1  # the 500 s old line (max_rows 3 keeps the rest)
        assert next(r["text"] for r in q(LogQuery())) == "Refund requested for order 42"
    finally:
        store.close()
