"""The driver's bookkeeping, against a fake task API: lost, failed with or without a reason."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from stalwart.chaos import Driver, comparable
from stalwart.errors import Overloaded


@dataclasses.dataclass
class Record:
    id: str
    status: str
    outcome: Any
    created_at: float
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


class FakeTasks:
    """Task ``t000000`` succeeds, ``t000001`` fails with a reason, ``t000002`` fails without
    one, ``t000003`` never finishes; the fifth submission is refused as overloaded."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    async def submit(self, agent: str, task_input: Any, *, task_id: str, seed: int) -> str:
        if len(self.submitted) == 4:
            self.submitted.append("refused")
            raise Overloaded("full")
        self.submitted.append(task_id)
        return task_id

    async def get(self, task_id: str) -> Record:
        now = time.time()
        return {
            "t000000": Record(task_id, "succeeded", {"answer": 1, "usage": {"x": 1}}, now - 2, now),
            "t000001": Record(task_id, "failed", {"type": "StoreError", "message": "x"}, now, now),
            "t000002": Record(task_id, "failed", None, now, now),
        }.get(task_id, Record(task_id, "running", None, now, None))


async def test_lost_failed_unclear_and_rejected_are_each_counted():
    driver = Driver(FakeTasks(), "a", lambda i: {"n": i}, seed=1)  # type: ignore[arg-type]
    await driver.burst("b", 5)
    await driver.drain(0.3)  # t000003 never finishes: lost when the drain time is up
    s = driver.summary()
    assert (s["arrivals"], s["submitted"], s["completed"], s["failed"], s["lost"]) == (
        5,
        4,
        1,
        2,
        1,
    )
    assert s["rejected"] == 1 and s["rejections"] == {"Overloaded": 1}
    assert s["rejection_examples"] == {"Overloaded": "t000004: full"}  # which one, and why
    assert s["lost_ids"] == ["t000003"] and s["unclear_failures"] == 1
    assert s["failures"] == {"StoreError: x": 1, "no reason": 1}
    assert s["latency_s"]["p50"] >= 1.9  # finished_at - created_at, from the store
    assert s["error_rate"] == 2 / 5 and s["shed_rate"] == 1 / 5


async def test_keep_bounds_what_a_long_run_remembers():
    driver = Driver(FakeTasks(), "a", lambda i: i, keep=lambda _id: False)  # type: ignore[arg-type]
    await driver.burst("b", 3)
    await driver.drain(0.2)
    assert list(driver.log) == []  # finished tasks only counted, not kept
    assert driver.summary()["completed"] == 1 and driver.finished == 3


def test_comparable_drops_what_differs_between_runs():
    a = {"answer": "x", "usage": {"tokens": 3}, "received_at": 1.0, "nested": [{"model": "m"}]}
    b = {"answer": "x", "usage": {"tokens": 9}, "received_at": 2.0, "nested": [{"model": "n"}]}
    assert comparable(a) == comparable(b) == {"answer": "x", "nested": [{}]}
    assert comparable({"answer": "x"}) != comparable({"answer": "y"})


class AppFailureTasks(FakeTasks):
    async def get(self, task_id: str) -> Record:
        outcome = {"status": "failed", "answer": "", "queue": "resolver"}
        return Record(task_id, "succeeded", outcome, time.time(), time.time())


async def test_a_result_that_says_it_failed_counts_as_a_failure_with_the_apps_reason():
    driver = Driver(AppFailureTasks(), "a", lambda i: i)  # type: ignore[arg-type]
    await driver.burst("b", 1)
    await driver.drain(0.2)
    s = driver.summary()
    assert (s["completed"], s["failed"], s["unclear_failures"]) == (0, 1, 0)
    assert list(s["failures"]) == ["AppReportedFailure: status 'failed'"]
    assert driver.log["t000000"].status == "failed"  # so it is not compared as a result


def test_comparable_reads_sub_task_ids_of_the_task_alike():
    a = {"answer": "x", "sub": "t-1.reviewer.1"}
    b = {"answer": "x", "sub": "t-1.reviewer.3"}  # handed over at another step after a resume
    assert comparable(a, "t-1") == comparable(b, "t-1") == {"answer": "x", "sub": "<sub-task>"}
    assert comparable({"sub": "t-2.reviewer.1"}, "t-1") != comparable(b, "t-1")


class TimedTasks:
    """Each task is stored at 100 + i and finished at 110 + 2 i by the store's clock; a
    submission waits until ``together`` of them are in flight at once."""

    def __init__(self, together: int) -> None:
        self.together = together
        self.in_flight = 0
        self.most = 0
        self.all_in = asyncio.Event()

    async def submit(self, agent: str, task_input: Any, *, task_id: str, seed: int) -> str:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.together:
            self.all_in.set()
        async with asyncio.timeout(5):
            await self.all_in.wait()
        self.in_flight -= 1
        return task_id

    async def get(self, task_id: str) -> Record:
        i = int(task_id[1:])
        return Record(task_id, "succeeded", {"answer": i}, 100.0 + i, 110.0 + 2 * i)


async def test_a_burst_keeps_submissions_in_flight_together_and_is_timed_by_the_store():
    # one submission after another, a busy node's answer time bounded a calibration
    # burst: "capacity" came out at half the node's, and 3x its rate shed nothing
    tasks = TimedTasks(together=4)
    driver = Driver(tasks, "a", lambda i: i)  # type: ignore[arg-type]
    await driver.burst("b", 6, concurrency=4)  # would time out if sent one by one
    assert tasks.most == 4
    await driver.drain(1.0)
    assert driver.summary("b")["completed"] == 6
    # first stored at 100, last (t000005) finished at 120: the node's 20 s
    assert driver.service_seconds("b") == 20.0


class SlowToAnswer(FakeTasks):
    """Accepts every task, answering each submission only after ``answer_s``."""

    def __init__(self, answer_s: float) -> None:
        super().__init__()
        self.answer_s = answer_s

    async def submit(self, agent: str, task_input: Any, *, task_id: str, seed: int) -> str:
        await asyncio.sleep(self.answer_s)
        self.submitted.append(task_id)
        return task_id


async def test_the_offered_rate_is_the_sending_not_the_waiting_for_answers():
    """An open loop at 200/s for 0.3 s against a node that answers each submission after
    0.6 s: the phase ends when the last answer comes (about 0.9 s after it began), but
    what was offered was about 60 arrivals in 0.3 s, not in 0.9 s."""
    driver = Driver(SlowToAnswer(0.6), "a", lambda i: i, seed=3)  # type: ignore[arg-type]
    phase = await driver.open_loop("x", 200.0, 0.3, max_tasks=10_000)
    assert phase.ended - phase.started >= 0.6 + 0.2  # the answers were waited for
    s = driver.summary("x")
    assert s["arrivals"] > 20
    assert s["offered_rate"] == s["arrivals"] / phase.offered
    assert 0.3 <= phase.offered < phase.ended - phase.started


class SlowTasks:
    """Stores every task at once but answers only after ``delay``; ``t000001`` is never
    stored (its submission hangs before the store)."""

    def __init__(self, delay: float) -> None:
        self.delay, self.stored = delay, set[str]()

    async def submit(self, agent: str, task_input: Any, *, task_id: str, seed: int) -> str:
        if task_id != "t000001":
            self.stored.add(task_id)
        await asyncio.sleep(self.delay)
        return task_id

    async def get(self, task_id: str) -> Record | None:
        now = time.time()
        return Record(task_id, "succeeded", {}, now, now) if task_id in self.stored else None


async def test_a_submission_answered_too_late_counts_by_whether_the_node_holds_it():
    driver = Driver(SlowTasks(delay=5.0), "a", lambda i: i, submit_timeout=0.2)  # type: ignore[arg-type]
    phase = await driver.burst("b", 2)
    assert phase.submitted == 1 and "t000000" in driver.log  # stored, answered late: accepted
    assert phase.rejections == {"TimeoutError": 1}
    assert phase.rejection_examples == {
        "TimeoutError": "t000001: no answer in 0.2 s, and not stored"
    }


class BlockingTasks(FakeTasks):
    """Holds the event loop for 0.3 s in its first submission, as a starved generator's
    loop is held: the arrivals due meanwhile go out late."""

    async def submit(self, agent: str, task_input: Any, *, task_id: str, seed: int) -> str:
        if not self.submitted:
            time.sleep(0.3)  # blocks the loop on purpose
        return await super().submit(agent, task_input, task_id=task_id, seed=seed)


async def test_an_open_loop_says_how_far_its_arrivals_fell_behind_their_schedule():
    on_time = await Driver(FakeTasks(), "a", lambda i: i).open_loop("p", 40.0, 0.5, max_tasks=3)
    late = await Driver(BlockingTasks(), "a", lambda i: i).open_loop("p", 40.0, 0.5, max_tasks=3)
    assert late.send_lag >= 0.2 > on_time.send_lag  # the second arrival waited for the first
