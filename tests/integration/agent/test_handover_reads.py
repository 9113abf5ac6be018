"""Hand-over waiters read the store together (agent/_handover.py): a notice that carries
the sub-task's end costs no read; waiters whose notices never come (the sub-tasks ran on
other nodes) share one read, in one transaction, instead of one read each."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

from stalwart.agent._handover import HandOvers
from stalwart.durable import SQLiteStore, Store
from stalwart.errors import StoreError
from stalwart.runtime import AgentContext
from stalwart.runtime._messages import OutCast


class Casts:
    """The channel of an agent context: records the casts; ``seen(n)`` waits for n."""

    def __init__(self) -> None:
        self.sent: list[OutCast] = []
        self._changed = asyncio.Event()

    def send(self, message: Any) -> None:
        assert isinstance(message, OutCast)
        self.sent.append(message)
        self._changed.set()

    async def seen(self, n: int) -> None:
        async with asyncio.timeout(30):
            while len(self.sent) < n:
                self._changed.clear()
                await self._changed.wait()


def handovers(store: Store, casts: Casts, first_poll: float) -> HandOvers:
    ctx = AgentContext(name="front", incarnation=1, channel=casts, default_timeout=5.0)  # type: ignore[arg-type]
    return HandOvers(store, ctx, "front", first_poll=first_poll, poll_cap=first_poll)


async def _finish(store: Store, task_id: str, outcome: Any) -> None:
    lease = await store.acquire("elsewhere/back", 30.0, task_id=task_id)
    assert lease is not None
    await store.finish(lease, "succeeded", outcome)


async def test_waiters_without_notices_share_one_read(tmp_path: pathlib.Path) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        casts = Casts()
        # first_poll is long enough that every waiter is waiting, and every sub-task has
        # ended, before the first read
        hand = handovers(store, casts, first_poll=3.0)
        n = 40
        waiting = [
            asyncio.ensure_future(hand.run("back", f"sub-{i}", {"i": i}, timeout=60))
            for i in range(n)
        ]
        await casts.seen(n)  # each waiter casts once it waits
        assert hand.waiting == n
        await asyncio.gather(*(_finish(store, f"sub-{i}", {"r": i}) for i in range(n)))
        outcomes = await asyncio.gather(*waiting)
        assert outcomes == [
            {"task_id": f"sub-{i}", "status": "succeeded", "result": {"r": i}} for i in range(n)
        ]
        assert hand.reads == 1  # not one read per waiter
        assert hand.waiting == 0


async def test_a_notice_with_the_end_costs_no_read(tmp_path: pathlib.Path) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        casts = Casts()
        hand = handovers(store, casts, first_poll=30.0)
        waiting = asyncio.ensure_future(hand.run("back", "sub", {"x": 1}, timeout=60))
        await casts.seen(1)
        assert casts.sent[0].payload == {"run": "sub", "notify": "front"}
        hand.finished("sub", ("failed", {"type": "ValueError"}))
        assert await waiting == {
            "task_id": "sub",
            "status": "failed",
            "result": {"type": "ValueError"},
        }
        assert hand.reads == 0


async def test_a_notice_without_the_end_reads_the_record(tmp_path: pathlib.Path) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        casts = Casts()
        hand = handovers(store, casts, first_poll=30.0)
        waiting = asyncio.ensure_future(hand.run("back", "sub", {"x": 1}, timeout=60))
        await casts.seen(1)
        await _finish(store, "sub", {"ok": True})
        hand.finished("sub")  # the callee remembered only that it ended
        assert (await waiting)["result"] == {"ok": True}
        assert hand.reads == 1


async def test_a_vanished_sub_task_fails_only_its_own_waiter(tmp_path: pathlib.Path) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        casts = Casts()
        hand = handovers(store, casts, first_poll=30.0)
        gone = asyncio.ensure_future(hand.run("back", "gone", {}, timeout=60))
        kept = asyncio.ensure_future(hand.run("back", "kept", {}, timeout=60))
        await casts.seen(2)
        await store.purge_finished(before=0.0, mode="delete")  # nothing finished: no-op
        await _finish(store, "gone", {})
        assert await store.purge_finished(before=float("inf"), mode="delete") == 1
        hand.finished("gone")  # its waiter reads, and finds no record
        with pytest.raises(StoreError, match="vanished"):
            await gone
        assert not kept.done()
        await _finish(store, "kept", {"k": 1})
        hand.finished("kept")
        assert (await kept)["result"] == {"k": 1}


async def test_a_hand_over_run_again_finds_its_sub_task_and_outcome(
    tmp_path: pathlib.Path,
) -> None:
    # what lets the hand-over's journal record be a lazy commit (agent/_peers.py): an OS
    # crash that loses it runs the hand-over again, which must find the sub-task it made
    # and its end, not make a second one
    async with SQLiteStore(tmp_path / "s.db") as store:
        casts = Casts()
        hand = handovers(store, casts, first_poll=0.05)
        first = asyncio.ensure_future(hand.run("back", "sub", {"x": 1}, timeout=60))
        await casts.seen(1)  # the waiter casts once it made the sub-task and waits
        await _finish(store, "sub", {"done": True})
        outcome = await first
        assert outcome == {"task_id": "sub", "status": "succeeded", "result": {"done": True}}
        again = await asyncio.wait_for(hand.run("back", "sub", {"x": 1}, timeout=60), 30)
        assert again == outcome
        assert [t.id for t in await store.list_tasks(agent="back")] == ["sub"]
