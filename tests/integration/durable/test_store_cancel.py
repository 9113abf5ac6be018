"""The Store contract for cancel and parking (durable approvals), on every backend
(SQLite, PostgreSQL, memory): a cancel ends the task and fences its runner; a parked
task holds no lease, is claimed by nobody until woken, and can be cancelled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stalwart.durable import JournalEntry, Store
from stalwart.errors import LeaseLost
from stalwart.testing import FakeClock

MakeStore = Callable[..., Any]
WHY = {"type": "Cancelled", "message": "cancelled by ann", "by": "ann"}


async def test_cancel_fences_the_runner_and_is_never_claimed(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    await store.create_task("a", 1, task_id="run")
    await store.create_task("a", 2, task_id="wait")
    lease = await store.acquire("n1/a", 30.0, task_id="run")
    assert lease is not None
    done = await store.cancel("run", WHY)
    assert done is not None and done.status == "cancelled" and done.outcome == WHY
    assert done.lease_owner == "n1/a"  # the last owner, so its node can interrupt it
    assert done.lease_token == lease.token + 1 and done.finished_at is not None
    # the runner that held it can write nothing more
    with pytest.raises(LeaseLost):
        await store.append(lease, [JournalEntry(0, "step", "s", 1)])
    with pytest.raises(LeaseLost):
        await store.effect_started(lease, "k", 0, "mail")
    with pytest.raises(LeaseLost):
        await store.heartbeat(lease, 30.0)
    with pytest.raises(LeaseLost):
        await store.finish(lease, "succeeded", 1)
    assert await store.load_effects("run") == {}
    # a pending one too; neither is ever claimed again, even forced or after expiry
    assert (await store.cancel("wait", WHY)).status == "cancelled"  # type: ignore[union-attr]
    clock.advance(3600)
    assert await store.acquire("n2/a", 30.0) is None
    assert await store.acquire("n2/a", 30.0, task_id="run", force=True) is None
    # idempotent: a finished task is returned unchanged; an unknown one is None
    again = await store.cancel("run", {"other": 1})
    assert again is not None and again.outcome == WHY and again.lease_token == done.lease_token
    assert await store.cancel("nope", WHY) is None
    assert {t.id for t in await store.list_tasks(status="cancelled")} == {"run", "wait"}


async def test_a_parked_task_holds_no_lease_until_woken(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    await store.create_task("a", 1, task_id="t")
    lease = await store.acquire("n1/a", 30.0)
    assert lease is not None
    waiting = {"awaiting": "approval", "approval": "ab12", "deadline": 99.0}
    await store.suspend(lease, waiting)
    parked = await store.get_task("t")
    assert parked is not None and parked.status == "awaiting_approval"
    assert parked.outcome == waiting and parked.lease_owner is None and not parked.finished
    assert [t.id for t in await store.list_tasks(status="awaiting_approval")] == ["t"]
    with pytest.raises(LeaseLost):  # parked: the old lease is gone
        await store.suspend(lease, waiting)
    clock.advance(3600)
    assert await store.acquire("n2/a", 30.0) is None  # nobody claims a parked task
    assert await store.wake("t") and not await store.wake("t")
    woken = await store.get_task("t")
    assert woken is not None and woken.status == "pending" and woken.outcome is None
    again = await store.acquire("n2/a", 30.0)
    assert again is not None and again.task_id == "t" and again.task.attempts == 2
    await store.suspend(again, waiting)
    done = await store.cancel("t", WHY)
    assert done is not None and done.status == "cancelled"
    assert not await store.wake("t")  # a late decision does not bring it back
    assert await store.wake("nope") is False
