"""WaitingCounts: one read for concurrent submissions; a cancelled or failed read."""

from __future__ import annotations

import asyncio

import pytest

from stalwart.errors import StoreUnavailable
from stalwart.node._admission import WaitingCounts


class Reads:
    """A store's counts that answer only when released; counts every read."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.calls = 0
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, who: list[str | None]) -> list[int]:
        self.calls += 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [self.value for _ in who]


async def _started(reads: Reads, calls: int) -> None:
    async with asyncio.timeout(5):
        while reads.calls < calls:
            await asyncio.sleep(0)


async def test_waiters_share_the_read_and_count_what_was_admitted_since() -> None:
    reads = Reads(3)
    counts = WaitingCounts(reads)

    async def admit() -> int:
        found = (await counts.counts(["a", None]))[0]
        counts.admitted(["a", None])
        return found

    pending = [asyncio.ensure_future(admit()) for _ in range(5)]
    await _started(reads, 1)
    reads.release.set()
    seen = await asyncio.gather(*pending)
    assert reads.calls == 1 and sorted(seen) == [3, 4, 5, 6, 7]
    # none written yet: a new read (still 3 in the store) counts all five on top
    assert await counts.counts(["a", None]) == [8, 8]
    for _ in range(5):
        counts.written(["a", None])
    reads.value = 8  # written: the store has them
    assert await counts.counts(["a", None]) == [8, 8] and reads.calls == 3


async def test_a_cancelled_reader_leaves_the_waiters_to_read_again() -> None:
    reads = Reads(0)
    counts = WaitingCounts(reads)
    leader = asyncio.ensure_future(counts.counts(["a"]))
    await _started(reads, 1)
    waiter = asyncio.ensure_future(counts.counts(["a"]))
    await asyncio.sleep(0)
    leader.cancel()
    await _started(reads, 2)  # the waiter read again
    reads.release.set()
    assert await waiter == [0]
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_failed_read_fails_its_waiters_too() -> None:
    reads = Reads(0)
    reads.fail = StoreUnavailable("the store did not answer")
    counts = WaitingCounts(reads)
    pending = [asyncio.ensure_future(counts.counts([None])) for _ in range(3)]
    await _started(reads, 1)
    reads.release.set()
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes) and reads.calls == 1
