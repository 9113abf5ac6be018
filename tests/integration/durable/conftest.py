"""Fixtures for the durable store tests: one factory per backend.

PostgreSQL isolation: one uniquely named database per test session, dropped at
the end; each test gets its own schema-free fresh tables by truncation.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from stalwart.durable import SQLiteStore, Store
from stalwart.testing import FakeClock, MemoryStore

PG_ADMIN = os.environ.get("STALWART_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    import psycopg

    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}")
    name = f"stalwart_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_reset(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS stalwart_meta, stalwart_tasks, stalwart_journal, "
            "stalwart_effects, stalwart_quarantine, stalwart_nodes"
        )


StoreFactory = Callable[..., Store]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("memory", id="memory"),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_store(
    backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[Callable[..., Any]]:
    """``await make_store()`` opens a store of this backend (the same one on every call)."""
    opened: list[Store] = []
    pg_url = request.getfixturevalue("pg_database") if backend == "postgres" else ""
    if backend == "postgres":
        _pg_reset(pg_url)
    memory: list[MemoryStore] = []

    async def factory(**kwargs: Any) -> Store:
        kwargs.setdefault("clock", clock)
        store: Store
        if backend == "sqlite":
            store = SQLiteStore(tmp_path / "store.db", **kwargs)
        elif backend == "postgres":
            from stalwart.durable import PostgresStore

            store = PostgresStore(pg_url, **kwargs)
        else:
            if not memory:
                memory.append(MemoryStore(**kwargs))
            store = memory[0]
        await store.open()
        opened.append(store)
        return store

    yield factory
    for store in reversed(opened):
        with contextlib.suppress(Exception):
            await store.close()
