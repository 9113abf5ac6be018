"""StalwartSaver against LangGraph's own conformance kit, on SQLite and PostgreSQL.

The kit (``langgraph-checkpoint-conformance``) is the contract LangGraph's savers are
held to; every capability the saver implements must pass, none may be missing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from tests._postgres import require_postgres

from stalwart.adapters.langgraph import StalwartSaver
from stalwart.adapters.langgraph._saver import LAZY, WRITER
from stalwart.db._metrics import LAZY_COMMITS
from stalwart.testing import postgres_database

pytestmark = pytest.mark.timeout(120)

CAPABILITIES = {
    "put", "put_writes", "get_tuple", "list", "delete_thread", "delete_for_runs",
    "copy_thread", "prune",
}  # fmt: skip


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    require_postgres()
    with postgres_database("stalwart_lg") as url:
        yield url


async def _conformance(url: str) -> None:
    @checkpointer_test(name=f"StalwartSaver[{url.split(':', maxsplit=1)[0]}]")
    async def factory() -> AsyncIterator[StalwartSaver]:
        saver = StalwartSaver(url)
        try:
            yield saver
        finally:
            saver.close()

    report = await validate(factory)
    failures = {
        name: result.failures for name, result in report.results.items() if not result.passed
    }
    assert not failures, failures
    assert {name for name, r in report.results.items() if r.detected} == CAPABILITIES
    assert sum(r.tests_passed for r in report.results.values()) >= 50


async def test_the_conformance_kit_passes_on_sqlite(tmp_path):
    await _conformance(f"sqlite:///{tmp_path}/lg.db")


async def test_the_conformance_kit_passes_with_a_tasks_lazy_writes(tmp_path):
    """Inside a task whose checkpoints share its store, the saver's writes are lazy (no
    fsync of their own): LangGraph's contract holds all the same (every read after a
    write sees it), and the writes really were lazy."""
    before = LAZY_COMMITS.labels("true")._value.get()
    writer, lazy = WRITER.set("task-1"), LAZY.set(True)
    try:
        await _conformance(f"sqlite:///{tmp_path}/lg.db")
    finally:
        LAZY.reset(lazy)
        WRITER.reset(writer)
    assert LAZY_COMMITS.labels("true")._value.get() - before >= 50


@pytest.mark.postgres
async def test_the_conformance_kit_passes_on_postgres(pg_url):
    await _conformance(pg_url)
