"""Fixtures for the durable store tests: one factory per backend.

PostgreSQL isolation: one uniquely named database per test session, dropped at
the end; each test gets its own schema-free fresh tables by truncation.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from tests._postgres import require_postgres

from stalwart.durable import SQLiteStore, Store
from stalwart.testing import FakeClock, MemoryStore, postgres_database


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    require_postgres()
    with postgres_database("stalwart_test") as url:
        yield url


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
