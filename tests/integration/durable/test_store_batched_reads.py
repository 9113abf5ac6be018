"""The Store's batched reads, on every backend: several tasks by id, and several listings,
each in one transaction (a node's sweep and a process's hand-over waiters use them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stalwart.durable import Store, TaskQuery

MakeStore = Callable[..., Any]


async def test_get_tasks_returns_the_existing_ones_and_leaves_out_the_rest(
    make_store: MakeStore,
) -> None:
    store: Store = await make_store()
    ids = [f"t{i}" for i in range(450)]  # more than one chunk of the IN list
    for i, tid in enumerate(ids):
        await store.create_task("a", {"n": i}, task_id=tid)
    lease = await store.acquire("n1/a", 30.0, task_id="t7")
    assert lease is not None
    await store.finish(lease, "succeeded", {"answer": 7})

    found = await store.get_tasks([*ids, "nope", "t7"])  # a repeat and a missing id
    assert sorted(r.id for r in found) == sorted(ids)
    by_id = {r.id: r for r in found}
    assert by_id["t7"].status == "succeeded" and by_id["t7"].outcome == {"answer": 7}
    assert by_id["t8"].status == "pending" and by_id["t8"].input == {"n": 8}
    assert await store.get_tasks([]) == []
    assert await store.get_tasks(["nope"]) == []


async def test_list_tasks_each_answers_each_query_as_list_tasks_would(
    make_store: MakeStore,
) -> None:
    store: Store = await make_store()
    for i in range(5):
        await store.create_task("a" if i % 2 else "b", i, task_id=f"t{i}")
    await store.cancel("t1", {"type": "Cancelled"})
    await store.cancel("t3", {"type": "Cancelled"})
    queries = (
        TaskQuery(status="cancelled", newest_first=True, limit=50),
        TaskQuery(status="pending", agent="b", limit=2),
        TaskQuery(status="awaiting_approval"),
    )
    got = await store.list_tasks_each(queries)
    want = [
        await store.list_tasks(status=q.status, agent=q.agent, limit=q.limit,
                               newest_first=q.newest_first)
        for q in queries
    ]  # fmt: skip
    assert [[r.id for r in one] for one in got] == [[r.id for r in one] for one in want]
    assert [r.id for r in got[0]] == ["t3", "t1"]
    assert [r.id for r in got[1]] == ["t0", "t2"]
    assert got[2] == []


async def test_count_pending_each_counts_as_count_pending_does(make_store: MakeStore) -> None:
    store: Store = await make_store()
    for i in range(5):
        await store.create_task("a" if i < 3 else "b", i, task_id=f"t{i}")
    lease = await store.acquire("n1/a", 30.0, task_id="t0")  # running: no longer waiting
    assert lease is not None
    got = await store.count_pending_each(["a", None, "b", "nobody"])
    assert got == [2, 4, 2, 0]
    assert got[:3] == [await store.count_pending(w) for w in ("a", None, "b")]
    assert await store.count_pending_each([]) == []
