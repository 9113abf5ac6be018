"""Property: any program, crashed at any points and resumed, ends as the uninterrupted run.

Programs are random sequences of steps, clock readings, random draws, key-deduplicated
side effects and checkpoints; crashes (a BaseException, as a kill would) are injected at
random operations, before or after the record. Run on the in-memory store, so hypothesis
can try many shapes quickly; the SQLite and PostgreSQL backends get the same treatment
with real processes in tests/integration/durable/test_kill_resume.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.durable import Context, Runner
from stalwart.testing import FakeClock, MemoryStore

OPS = st.lists(st.sampled_from(["step", "async", "now", "random", "effect"]), min_size=1,
               max_size=25)  # fmt: skip


class Crash(BaseException):
    pass


class TaskClock(FakeClock):
    """The k-th reading of a task's life is 1000 + k, however many processes it takes."""

    def __init__(self, readings: int) -> None:
        super().__init__()
        self.k = readings

    def time(self) -> float:
        self.k += 1
        return 1000.0 + self.k


def program(ops: list[str], crash: tuple[int, bool] | None, delivered: dict[str, int]) -> Any:
    async def wf(ctx: Context, seed: Any) -> Any:
        acc = seed
        for i, op in enumerate(ops):

            def pure(acc: int = acc, i: int = i) -> int:
                if crash == (i, False):
                    raise Crash
                return (acc * 31 + i) % 1_000_007

            async def pure_async(acc: int = acc, i: int = i) -> int:
                return pure(acc, i)

            def pay(amount: int, *, idempotency_key: str, i: int = i) -> int:
                if idempotency_key not in delivered:
                    delivered[idempotency_key] = amount
                if crash == (i, False):
                    raise Crash  # delivered, "completed" not recorded
                return delivered[idempotency_key]

            if op == "step":
                acc = await ctx.step(f"s{i}", pure)
            elif op == "async":
                acc = await ctx.step(f"a{i}", pure_async)
            elif op == "now":
                acc = (acc + int(await ctx.now())) % 1_000_007
            elif op == "random":
                acc = (acc + int(await ctx.random() * 1e6)) % 1_000_007
            else:
                acc = (acc + await ctx.effect(f"pay{i}", pay, acc % 97, deduplicated=True)) % (
                    1_000_007
                )
            if crash == (i, True):
                raise Crash
        return acc

    return wf


async def _run(ops: list[str], crashes: list[tuple[int, bool]]) -> tuple[Any, Any, dict[str, int]]:
    store = MemoryStore()
    await store.open()
    delivered: dict[str, int] = {}
    ref_runner = Runner(store, clock=TaskClock(0))
    ref = await ref_runner.run(await ref_runner.submit("p", 7, seed=3), program(ops, None, {}))
    tid = await ref_runner.submit("p", 7, seed=3)
    for crash in [*crashes, None]:
        nows = sum(1 for e in (await store.load_journal(tid)).entries if e.kind == "now")
        runner = Runner(store, clock=TaskClock(nows))
        try:
            result = await runner.run(tid, program(ops, crash, delivered), force=True)
        except Crash:
            continue
        return ref.result, result.result, delivered
    raise AssertionError("unreachable")


@settings(max_examples=150, deadline=None)
@given(OPS, st.data())
def test_any_crash_schedule_ends_like_the_uninterrupted_run(ops: list[str], data: Any) -> None:
    crashes = data.draw(
        st.lists(st.tuples(st.integers(0, len(ops) - 1), st.booleans()), max_size=4)
    )
    expected, got, delivered = asyncio.run(_run(ops, crashes))
    assert got == expected
    assert len(delivered) == ops.count("effect")  # one delivery per payment, never two
