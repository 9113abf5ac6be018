"""Journal, replay, ledger and leases through the Runner, against every backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.durable import Context, Runner, Store
from stalwart.errors import DeadlineExceeded, LeaseLost, OutcomeUnknown, StoreUnavailable
from stalwart.testing import FakeClock

MakeStore = Callable[..., Any]


class Crash(BaseException):
    """Stands in for a process death: escapes every ``except Exception``."""


def counting_workflow(calls: dict[str, int], crash_at: int | None) -> Any:
    async def workflow(ctx: Context, inp: Any) -> Any:
        total = inp["start"]
        trail = []
        for i in range(10):

            def add(i: int = i, total: int = total) -> int:
                calls[f"s{i}"] = calls.get(f"s{i}", 0) + 1
                if crash_at == i:
                    raise Crash
                return total + i * i

            total = await ctx.step(f"s{i}", add)
            if i % 3 == 0:
                trail.append([await ctx.now(), await ctx.random()])
        return {"total": total, "trail": trail}

    return workflow


async def test_resume_replays_without_rerunning(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, owner="first", clock=clock)
    tid = await runner.submit("count", {"start": 5}, seed=11)
    calls: dict[str, int] = {}
    with pytest.raises(Crash):
        await runner.run(tid, counting_workflow(calls, crash_at=6))
    clock.advance(100)  # the first runner's recorded times must come back, not these
    second = Runner(store, owner="second", clock=clock)
    resumed = await second.run(tid, counting_workflow(calls, crash_at=None))
    assert resumed.status == "succeeded"
    assert all(calls[f"s{i}"] == 1 for i in range(6)), calls
    assert calls["s6"] == 2  # it crashed before recording, so it ran again
    assert resumed.replayed_steps == 6 + 2 * 2  # six steps, two (now, random) pairs
    # Equal to an uninterrupted run of a twin task with the same seed and clock readings.
    twin_clock = FakeClock()
    twin = Runner(store, owner="twin", clock=twin_clock)
    ref = await twin.run(
        await twin.submit("count", {"start": 5}, seed=11), counting_workflow({}, None)
    )
    assert resumed.result["total"] == ref.result["total"] == 5 + sum(i * i for i in range(10))
    assert [r for _, r in resumed.result["trail"]] == [r for _, r in ref.result["trail"]]
    assert resumed.result["trail"][0][0] == clock.time() - 100  # recorded before the crash
    again = await second.run(tid, counting_workflow(calls, None))
    assert again.result == resumed.result  # finished: the stored outcome, nothing re-run


async def test_renamed_step_is_non_determinism(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    tid = await runner.submit("w", None)

    async def v1(ctx: Context, _: Any) -> Any:
        await ctx.step("fetch", lambda: 1)
        raise Crash

    async def v2(ctx: Context, _: Any) -> Any:
        return await ctx.step("download", lambda: 1)

    with pytest.raises(Crash):
        await runner.run(tid, v1)
    result = await Runner(store, clock=clock).run(tid, v2, force=True)
    assert result.status == "failed" and result.result["type"] == "NonDeterminismError"
    assert "'download'" in result.result["message"] and "'fetch'" in result.result["message"]


async def test_fewer_steps_is_non_determinism(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    tid = await runner.submit("w", None)

    async def v1(ctx: Context, _: Any) -> Any:
        await ctx.step("a", lambda: 1)
        await ctx.step("b", lambda: 2)
        raise Crash

    async def v2(ctx: Context, _: Any) -> Any:
        return await ctx.step("a", lambda: 1)

    with pytest.raises(Crash):
        await runner.run(tid, v1)
    result = await Runner(store, clock=clock).run(tid, v2, force=True)
    assert result.result["type"] == "NonDeterminismError"


async def test_non_json_step_result_fails_clearly(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)

    async def wf(ctx: Context, _: Any) -> Any:
        return await ctx.step("when", lambda: {"at": object()})

    result = await runner.run(await runner.submit("w", None), wf)
    assert result.status == "failed" and result.result["type"] == "InvalidMessage"
    assert "step 'when'" in result.result["message"] and "$.at" in result.result["message"]


async def test_async_steps_and_durable_sleep(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)

    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async def wf(ctx: Context, inp: Any) -> Any:
        value = await ctx.step("double", double, inp)
        await ctx.sleep(60)
        return value

    run = asyncio.ensure_future(runner.run(await runner.submit("w", 21), wf))
    async with asyncio.timeout(10):
        while clock.pending_sleepers < 2:  # the heartbeat and the durable sleep
            await asyncio.sleep(0.001)
    assert not run.done()
    clock.advance(60)
    async with asyncio.timeout(10):
        result = await run
    assert result.result == 42


async def test_checkpoint_restore(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    tid = await runner.submit("loop", 0)
    ran: list[int] = []

    def make(crash_at: int | None) -> Any:
        async def wf(ctx: Context, start: Any) -> Any:
            state = ctx.restore() or {"i": 0, "acc": start}
            while state["i"] < 6:
                i = state["i"]

                def body(i: int = i, acc: int = state["acc"]) -> int:
                    ran.append(i)
                    if i == crash_at:
                        raise Crash
                    return acc + i

                state = {"i": i + 1, "acc": await ctx.step("body", body)}
                await ctx.checkpoint(state)
            return state["acc"]

        return wf

    with pytest.raises(Crash):
        await runner.run(tid, make(4))
    result = await Runner(store, clock=clock).run(tid, make(None), force=True)
    assert result.result == sum(range(6))
    assert ran == [0, 1, 2, 3, 4, 4, 5]


async def test_lease_lost_stops_the_work(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, owner="slow", clock=clock, lease_seconds=30)
    tid = await runner.submit("w", None)
    gate = asyncio.Event()

    async def wf(ctx: Context, _: Any) -> Any:
        await gate.wait()
        return 1

    run = asyncio.ensure_future(runner.run(tid, wf))
    async with asyncio.timeout(10):
        while clock.pending_sleepers < 1:
            await asyncio.sleep(0.001)
    thief = await store.acquire("other", 30, task_id=tid, force=True)
    assert thief is not None
    clock.advance(10)  # the heartbeat fires and is refused
    with pytest.raises(LeaseLost):
        async with asyncio.timeout(10):
            await run
    task = await store.get_task(tid)
    assert task is not None and task.lease_owner == "other"


async def test_a_runner_that_cannot_renew_gives_up_before_the_lease_expires(
    make_store: MakeStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store: Store = await make_store()
    runner = Runner(store, owner="cut-off", clock=clock, lease_seconds=30)
    tid = await runner.submit("w", None)
    gate = asyncio.Event()

    async def wf(ctx: Context, _: Any) -> Any:
        await gate.wait()
        return 1

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("the store is cut off (test)")

    run = asyncio.ensure_future(runner.run(tid, wf))
    async with asyncio.timeout(10):
        while clock.pending_sleepers < 1:
            await asyncio.sleep(0.001)
    monkeypatch.setattr(store, "heartbeat_many", unreachable)
    clock.advance(10)  # first renewal fails: 10 s since the lease, keep trying
    async with asyncio.timeout(10):
        while clock.pending_sleepers < 1:
            await asyncio.sleep(0.001)
    assert not run.done()
    clock.advance(10)  # 20 s = two thirds of the lease without a renewal: give up
    with pytest.raises(LeaseLost, match="before the lease could expire"):
        async with asyncio.timeout(10):
            await run
    task = await store.get_task(tid)  # still leased until it expires: nobody worked past it
    assert task is not None and task.status == "running" and task.lease_owner == "cut-off"


async def test_a_task_started_late_renews_its_lease_at_once(
    make_store: MakeStore, clock: FakeClock
) -> None:
    """Issue 19: a task claimed in a burst starts late. Its lease counts from the claim,
    not from the start: a heartbeat that counted from its start waited for the tick
    while the lease ran out under it, and the agent's own claim loop took the task again
    mid-step. Now it renews at once, and another owner cannot take the task."""
    store: Store = await make_store()
    runner = Runner(store, owner="late", clock=clock, lease_seconds=30)
    tid = await runner.submit("w", None)
    claimed_at = clock.monotonic()
    lease = await store.acquire("late", 30, task_id=tid)
    assert lease is not None
    claimed_until = lease.expires
    clock.advance(21)  # claimed 21 s ago: 9 s of the lease left, less than its third
    gate = asyncio.Event()

    async def wf(ctx: Context, _: Any) -> Any:
        await gate.wait()
        return 1

    run = asyncio.ensure_future(runner.execute(lease, wf, claimed_at=claimed_at))
    async with asyncio.timeout(10):  # renewed without the clock moving to the next tick
        while runner.renewals.writes < 1:
            await asyncio.sleep(0.001)
    task = await store.get_task(tid)
    assert task is not None and task.lease_expires == pytest.approx(clock.time() + 30)
    assert task.lease_expires > claimed_until
    clock.advance(10)  # past the claimed lease's end: still held
    assert await store.acquire("thief", 30, task_id=tid) is None
    gate.set()
    async with asyncio.timeout(10):
        result = await run
    assert result.status == "succeeded" and result.result == 1


async def test_a_runner_renews_all_its_leases_in_one_write_per_tick(
    make_store: MakeStore, clock: FakeClock
) -> None:
    """Renewal writes grow with ticks, not with tasks (one round renews every lease)."""
    store: Store = await make_store()
    runner = Runner(store, owner="busy", clock=clock, lease_seconds=30)
    gate = asyncio.Event()

    async def wf(ctx: Context, _: Any) -> Any:
        await gate.wait()
        return ctx.task_id

    ids = [await runner.submit("w", None) for _ in range(50)]
    runs = [asyncio.ensure_future(runner.run(tid, wf)) for tid in ids]
    async with asyncio.timeout(10):
        while clock.pending_sleepers < 50:  # every heartbeat waits for the tick
            await asyncio.sleep(0.001)
    for tick in range(1, 4):
        clock.advance(10)
        async with asyncio.timeout(10):
            while runner.renewals.writes < tick or clock.pending_sleepers < 50:
                await asyncio.sleep(0.001)
        assert runner.renewals.writes == tick
    for tid in ids:  # each lease now runs 30 s past the last tick
        task = await store.get_task(tid)
        assert task is not None and task.lease_expires == pytest.approx(clock.time() + 30)
    gate.set()
    async with asyncio.timeout(10):
        results = await asyncio.gather(*runs)
    assert sorted(r.result for r in results) == sorted(ids)


async def test_a_renewal_that_ended_in_time_counts_when_seen_late(
    make_store: MakeStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: on a busy loop the renewal's answer and its deadline land in the same
    turn, and the deadline's timer ran first: the store had renewed the lease, yet the
    runner gave it up. An answer that is in counts, however late it is seen."""
    store: Store = await make_store()
    task = await store.create_task("w", None)
    lease = await store.acquire("busy", 30, task_id=task.id)
    assert lease is not None
    renewals = Runner(store, owner="busy", clock=clock, lease_seconds=30).renewals
    clock.advance(10)
    answer = await store.heartbeat_many([lease], 30)  # what the store answers

    async def answered_then_held(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)  # the loop is held past the deadline (a busy process), not a wait
        return answer

    monkeypatch.setattr(store, "heartbeat_many", answered_then_held)
    renewed = await renewals.renew(lease, 0.1)
    assert renewed is not None and renewed.expires == pytest.approx(clock.time() + 30)
    assert renewals.writes == 1


async def test_renewals_ask_for_longer_leases_while_they_come_back_late(
    make_store: MakeStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that came back late (a busy loop or store) makes the next ones ask for
    three times lease_seconds; only CALM_TICKS ticks of rounds in time halve it."""
    from stalwart.durable._renewal import CALM_TICKS

    store: Store = await make_store()
    task = await store.create_task("w", None)
    lease = await store.acquire("busy", 30, task_id=task.id)
    assert lease is not None
    renewals = Runner(store, owner="busy", clock=clock, lease_seconds=30).renewals
    original = store.heartbeat_many
    slow = [True]

    async def write(leases: Any, seconds: float) -> Any:
        answer = await original(leases, seconds)
        if slow[0]:
            clock.advance(6)  # came back 0.6 of a tick later (half is the bound)
        return answer

    monkeypatch.setattr(store, "heartbeat_many", write)

    async def renew() -> float:
        nonlocal lease
        renewed, seconds = await renewals.renew_for(lease, 10)
        assert renewed is not None
        lease = renewed
        return seconds

    assert await renew() == 30 and renewals.asking == 90  # late: the longest, at once
    slow[0] = False
    assert await renew() == 90
    row = await store.get_task(task.id)
    assert row is not None and row.lease_expires == pytest.approx(clock.time() + 90)
    calm = CALM_TICKS * renewals.interval
    clock.advance(calm - 1)
    assert await renew() == 90 and renewals.asking == 90  # not calm for long enough yet
    clock.advance(1)
    assert await renew() == 90 and renewals.asking == 45
    clock.advance(calm)
    assert await renew() == 45 and renewals.asking == 30
    renewals.stretch()  # a burst of claims
    assert await renew() == 90


async def test_a_round_outlives_its_leader(
    make_store: MakeStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat leading a round is cancelled mid-write (its task ended): the
    others' leases are renewed all the same (before, the whole round failed)."""
    store: Store = await make_store()
    leases = []
    for _ in range(3):
        task = await store.create_task("w", None)
        lease = await store.acquire("busy", 30, task_id=task.id)
        assert lease is not None
        leases.append(lease)
    renewals = Runner(store, owner="busy", clock=clock, lease_seconds=30).renewals
    gate = asyncio.Event()
    writing = asyncio.Event()
    original = store.heartbeat_many

    async def slow_write(*args: Any, **kwargs: Any) -> Any:
        writing.set()
        await gate.wait()  # the write is in flight while the leader is cancelled
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, "heartbeat_many", slow_write)
    clock.advance(10)
    leader, *members = [asyncio.ensure_future(renewals.renew(lease)) for lease in leases]
    async with asyncio.timeout(10):
        await writing.wait()
    leader.cancel()
    await asyncio.gather(leader, return_exceptions=True)
    gate.set()
    async with asyncio.timeout(10):
        renewed = await asyncio.gather(*members)
    assert [r.task_id if r else None for r in renewed] == [lease.task_id for lease in leases[1:]]
    assert renewals.writes == 1
    for lease in leases:  # the one write renewed the leader's lease too
        task = await store.get_task(lease.task_id)
        assert task is not None and task.lease_expires == pytest.approx(clock.time() + 30)


class Service:
    """An in-process stand-in for a payment API: counts deliveries per key."""

    def __init__(self, deduplicates: bool) -> None:
        self.deduplicates = deduplicates
        self.requests: dict[str, int] = {}
        self.delivered: dict[str, Any] = {}
        self.crash_after_delivery = False

    def call(self, amount: int, *, idempotency_key: str) -> Any:
        self.requests[idempotency_key] = self.requests.get(idempotency_key, 0) + 1
        if not (self.deduplicates and idempotency_key in self.delivered):
            self.delivered[idempotency_key] = {"charged": amount}
        if self.crash_after_delivery:
            self.crash_after_delivery = False
            raise Crash
        return self.delivered[idempotency_key]


async def test_dedup_effect_is_retried_with_the_same_key(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    service = Service(deduplicates=True)
    service.crash_after_delivery = True
    runner = Runner(store, clock=clock)

    async def wf(ctx: Context, _: Any) -> Any:
        return await ctx.effect("charge", service.call, 30, deduplicated=True)

    tid = await runner.submit("pay", None)
    with pytest.raises(Crash):
        await runner.run(tid, wf)
    result = await Runner(store, clock=clock).run(tid, wf, force=True)
    assert result.result == {"charged": 30}
    assert list(service.requests.values()) == [2] and len(service.delivered) == 1
    assert [e.name for e in runner.events.recent("durable.effect_retried")]


async def test_unknown_outcome_is_reported_never_repeated(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    mailer = Service(deduplicates=False)
    mailer.crash_after_delivery = True
    runner = Runner(store, clock=clock)

    async def wf(ctx: Context, _: Any) -> Any:
        try:
            return await ctx.effect("email", mailer.call, 1, deduplicated=False)
        except OutcomeUnknown as exc:
            return {"unknown": exc.key}

    tid = await runner.submit("mail", None)
    with pytest.raises(Crash):
        await runner.run(tid, wf)
    second = Runner(store, clock=clock)
    result = await second.run(tid, wf, force=True)
    assert result.result == {"unknown": f"{tid}:0"}
    assert mailer.requests == {f"{tid}:0": 1}
    events = second.events.recent("durable.effect_outcome_unknown")
    assert [e["key"] for e in events] == [f"{tid}:0"]
    effects = await store.load_effects(tid)
    assert effects[0].status == "unknown"


async def test_reconcile_hook_resolves_unknown(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    mailer = Service(deduplicates=False)
    mailer.crash_after_delivery = True
    runner = Runner(store, clock=clock)

    async def wf(ctx: Context, _: Any) -> Any:
        return await ctx.effect(
            "email", mailer.call, 2, deduplicated=False, reconcile=mailer.delivered.get
        )

    tid = await runner.submit("mail", None)
    with pytest.raises(Crash):
        await runner.run(tid, wf)
    result = await Runner(store, clock=clock).run(tid, wf, force=True)
    assert result.result == {"charged": 2} and mailer.requests == {f"{tid}:0": 1}


async def test_a_transient_error_gives_the_task_back_a_bounded_number_of_times(
    make_store: MakeStore, clock: FakeClock
) -> None:
    """A retryable error that escapes the task (its own retries exhausted) releases the
    task to run again, ``transient_attempts`` times in all; then the task fails with it.
    The store's own errors never count (a full disk must not fail tasks)."""
    store: Store = await make_store()
    runner = Runner(store, owner="r", clock=clock, transient_attempts=3)
    tid = await runner.submit("w", None)
    runs = 0

    async def wf(ctx: Context, _: Any) -> Any:
        nonlocal runs
        runs += 1
        raise DeadlineExceeded("the partner API did not answer within 10 s")

    for _ in range(2):
        with pytest.raises(DeadlineExceeded):
            await runner.run(tid, wf)
        task = await store.get_task(tid)
        assert task is not None and task.status == "pending"  # given back
    result = await runner.run(tid, wf)
    assert result.status == "failed" and runs == 3
    assert result.result["type"] == "DeadlineExceeded"


async def test_failed_step_is_journaled_and_replayed(
    make_store: MakeStore, clock: FakeClock
) -> None:
    from stalwart.errors import StepFailed

    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    tid = await runner.submit("w", None)
    calls: list[str] = []

    def flaky() -> Any:
        calls.append("flaky")
        raise ValueError("upstream said no")

    def make(crash: bool) -> Any:
        async def wf(ctx: Context, _: Any) -> Any:
            try:
                value = await ctx.step("fetch", flaky)
            except StepFailed as exc:
                assert exc.error_type == "builtins.ValueError"
                value = await ctx.step("fallback", "fallback after {}".format, exc.error_message)
            if crash:
                raise Crash
            return value

        return wf

    with pytest.raises(Crash):
        await runner.run(tid, make(crash=True))
    result = await Runner(store, clock=clock).run(tid, make(crash=False), force=True)
    assert result.result == "fallback after upstream said no"
    assert calls == ["flaky"]  # the failure was replayed, not re-run
    assert result.replayed_steps == 2


async def test_failed_effect_is_journaled(make_store: MakeStore, clock: FakeClock) -> None:
    from stalwart.errors import StepFailed

    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    tid = await runner.submit("w", None)
    calls: list[str] = []

    def declined(*, idempotency_key: str) -> Any:
        calls.append(idempotency_key)
        raise RuntimeError("card declined")

    async def wf(ctx: Context, _: Any) -> Any:
        try:
            await ctx.effect("charge", declined, deduplicated=True)
        except StepFailed as exc:
            if ctx.attempt == 1:
                raise Crash from exc
            return exc.error_message
        return "charged"

    with pytest.raises(Crash):
        await runner.run(tid, wf)
    result = await Runner(store, clock=clock).run(tid, wf, force=True)
    assert result.result == "card declined" and calls == [f"{tid}:0"]
    assert (await store.load_effects(tid))[0].status == "failed"


async def test_expired_lease_lets_another_runner_resume(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    dead = Runner(store, owner="dead", clock=clock, lease_seconds=30)
    tid = await dead.submit("count", {"start": 1}, seed=2)
    calls: dict[str, int] = {}
    with pytest.raises(Crash):
        await dead.run(tid, counting_workflow(calls, crash_at=4))
    heir = Runner(store, owner="heir", clock=clock, lease_seconds=30)
    assert await heir.run_next({"count": counting_workflow(calls, None)}) is None  # leased
    clock.advance(31)
    result = await heir.run_next({"count": counting_workflow(calls, None)})
    assert result is not None and result.status == "succeeded" and result.attempts == 2
    assert all(calls[f"s{i}"] == 1 for i in range(4))


async def test_the_result_carries_the_end_as_stored(
    make_store: MakeStore, clock: FakeClock
) -> None:
    """TaskResult.stored is what the task's record now holds (a hand-over's notice carries
    it, so the waiting caller reads nothing): on success, on failure, for a finished task."""
    store: Store = await make_store()
    runner = Runner(store, owner="r", clock=clock)

    async def ok(ctx: Context, inp: Any) -> Any:
        return {"answer": inp}

    async def bad(ctx: Context, inp: Any) -> Any:
        raise ValueError("no")

    for workflow, status in ((ok, "succeeded"), (bad, "failed")):
        tid = await runner.submit("a", 7)
        result = await runner.run(tid, workflow)
        record = await store.get_task(tid)
        assert record is not None and record.status == status
        assert result.stored == (record.status, record.outcome)
        again = await runner.run(tid, workflow)  # finished: the stored end, not a rerun
        assert again.stored == (record.status, record.outcome)
