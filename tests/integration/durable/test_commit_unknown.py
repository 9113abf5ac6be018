"""A task submission whose COMMIT's answer was lost (``CommitUnknown``) is resolved by
what the store holds: stored, the submission succeeded; not stored, it is stored now;
another task under that id, it already exists. Before, the caller got a 503 saying
"nothing was stored" of a task that may have been.

The lost answer is injected at the kernel's ``write`` (a real SQLite store under it): a
dropped connection during COMMIT cannot be had on demand. On PostgreSQL it came from a
session that sat idle in its transaction past ``idle_in_transaction_timeout`` (2 s) in a
test process starved by two CPU hogs and a loaded suite."""

from __future__ import annotations

from typing import Any

import pytest

from stalwart.durable import open_store
from stalwart.errors import CommitUnknown, StoreError


async def _store_losing_the_first_answer(tmp_path, monkeypatch, *, landed: bool):
    store = await open_store(f"sqlite:///{tmp_path / 'tasks.db'}")
    real = store.database.write
    calls: list[Any] = []

    async def write(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        if len(calls) == 1:
            if landed:
                await real(fn, *args, **kwargs)
            raise CommitUnknown("connection closed (during commit: the outcome is unknown)")
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(store.database, "write", write)
    return store, calls


@pytest.mark.parametrize("landed", [True, False], ids=["commit-landed", "rolled-back"])
async def test_a_lost_commit_answer_is_resolved_by_the_stored_row(tmp_path, monkeypatch, landed):
    store, calls = await _store_losing_the_first_answer(tmp_path, monkeypatch, landed=landed)
    try:
        record = await store.create_task("triage", {"n": 1}, task_id="t1", seed=7)
        stored = await store.get_task("t1")
        assert stored is not None and (stored.agent, stored.seed, stored.input) == (
            "triage", 7, {"n": 1},
        )  # fmt: skip
        assert stored.created_at == record.created_at
        # landed: read and recognised, not written again; rolled back: written once more
        assert len(calls) == (1 if landed else 2)
        assert len(await store.list_tasks(limit=10)) == 1
    finally:
        await store.close()


async def test_someone_else_s_task_under_the_id_still_already_exists(tmp_path, monkeypatch):
    store = await open_store(f"sqlite:///{tmp_path / 'tasks.db'}")
    try:
        await store.create_task("resolver", {"other": True}, task_id="t1", seed=1)
        real = store.database.write

        async def write(fn: Any, *args: Any, **kwargs: Any) -> Any:
            await real(fn, *args, **kwargs)  # the insert changed nothing: the id is taken
            raise CommitUnknown("connection closed (during commit: the outcome is unknown)")

        monkeypatch.setattr(store.database, "write", write)
        with pytest.raises(StoreError, match="already exists"):
            await store.create_task("triage", {"n": 1}, task_id="t1", seed=7)
    finally:
        await store.close()
