"""Summarization is a journaled step: a resumed task gets the same summary, exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from stalwart.durable import Context, History, Runner, Store, Summarize, count_messages
from stalwart.testing import FakeClock

MakeStore = Callable[..., Any]


class Crash(BaseException):
    pass


def agent(calls: list[int], crash_at: int | None, budget: int = 1500) -> Any:
    def summarize(messages: list[dict[str, Any]]) -> str:
        calls.append(len(messages))
        return f"summary #{len(calls)} of {len(messages)} messages"  # differs per call

    async def wf(ctx: Context, _: Any) -> Any:
        history = History(budget, strategy=Summarize(summarize),
                          messages=[{"role": "system", "content": "be brief"}])  # fmt: skip
        peak = 0
        for step in range(60):
            history.add({"role": "user", "content": f"question {step} " + "data " * 150})
            sent = await history.fit(ctx)
            peak = max(peak, count_messages(sent))
            answer = await ctx.step("model", "answer using {} messages".format, len(sent))
            history.add({"role": "assistant", "content": answer})
            if step == crash_at:
                raise Crash
        return {"messages": history.messages, "peak": peak}

    return wf


async def test_summary_replays_exactly(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    reference = await runner.run(await runner.submit("chat", None), agent([], None))
    assert reference.result["peak"] <= 1500
    tid = await runner.submit("chat", None)
    calls: list[int] = []
    with pytest.raises(Crash):
        await runner.run(tid, agent(calls, crash_at=37))
    before = len(calls)
    assert before >= 3
    resumed = await Runner(store, clock=clock).run(tid, agent(calls, None), force=True)
    assert resumed.result == reference.result
    # Summaries recorded before the crash were replayed, not recomputed.
    assert len(calls) - before < before
