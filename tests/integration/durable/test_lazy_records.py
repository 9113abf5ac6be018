"""``ctx.now()`` and ``ctx.random()`` record lazily at ``full`` durability (docs/durable.md,
*What ``full`` guarantees*): committed before the call returns, without an fsync of their
own; the next ordinary commit makes them durable with its own.

Checked on disk, on a real SQLite store, as the model call's record is
(``tests/integration/agent/test_model_record_durability.py``): two crash images -- the
files as an OS crash would leave them right after the calls (the unsynced tail lost) and
after the next ordinary commit -- resume differently: the first reads the clock again
(and draws the same number: it comes from the task's seed), the second replays both.
"""

from __future__ import annotations

import pathlib
from typing import Any

from tests._crash import crash_image
from tests.integration.agent.test_model_record_durability import committed, journal

from stalwart.durable import Runner, SQLiteStore
from stalwart.observe import EventBus
from stalwart.testing import FakeClock


class Run:
    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.marks: dict[str, Any] = {}

    def wal(self) -> int:
        return pathlib.Path(f"{self.path}-wal").stat().st_size

    async def workflow(self, ctx: Any, value: Any) -> Any:
        await ctx.step("prepare", lambda: 1)  # an ordinary, fsynced commit
        self.marks.setdefault("wal_before", self.wal())
        self.marks.setdefault("before", committed())
        stamp = await ctx.now()
        self.marks.setdefault("after_now", committed())
        draw = await ctx.random()
        self.marks.setdefault("after_random", committed())
        await ctx.step("after", lambda: 2)  # ordinary: syncs both records with its own
        self.marks.setdefault("after_step", committed())
        self.marks.setdefault("wal_after", self.wal())
        return {"stamp": stamp, "draw": draw}


async def run_on(path: pathlib.Path, task_id: str, clock: FakeClock) -> Any:
    store = SQLiteStore(str(path))
    await store.open()
    try:
        runner = Runner(store, owner="node-b", events=EventBus(log=False), clock=clock)
        result = await runner.run(task_id, Run(path).workflow, force=True)
    finally:
        await store.close()
    assert result is not None and result.status == "succeeded", result
    return result.result


async def test_now_and_random_are_lazy_records_made_durable_by_the_next_commit(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "t.db"
    # no checkpoint during the run: every commit stays in the WAL, in order
    store = SQLiteStore(str(path), wal_autocheckpoint=100_000)  # durability "full"
    await store.open()
    run = Run(path)
    images: dict[str, pathlib.Path] = {}
    try:
        runner = Runner(store, owner="node-a", events=EventBus(log=False), clock=FakeClock())
        task_id = await runner.submit("clock", {})

        async def imaging(ctx: Any, value: Any) -> Any:
            result = await run.workflow(ctx, value)
            images["lost"] = crash_image(path, run.marks["wal_before"], tmp_path / "lost")
            images["kept"] = crash_image(path, run.marks["wal_after"], tmp_path / "kept")
            return result

        first = await runner.run(task_id, imaging)
    finally:
        await store.close()
    assert first is not None and first.status == "succeeded", first
    marks = run.marks
    # each record one commit, lazy; the step after them an ordinary one
    for before, after in (("before", "after_now"), ("after_now", "after_random")):
        wrote = marks[after][0] - marks[before][0]
        lazy = marks[after][1] - marks[before][1]
        assert (wrote, lazy) == (1, 1)
    assert marks["after_step"][1] == marks["after_random"][1]  # not lazy
    assert [k for _, k, _ in journal(path, task_id)] == ["step", "now", "random", "step"]

    # An OS crash right after the calls: both records lost; the resumed task reads the
    # clock again (another time) and draws the same number from its seed
    lost = images["lost"]
    assert [k for _, k, _ in journal(lost, task_id)] == ["step"]
    later = FakeClock(wall_start=1_800_000_000.0)
    again = await run_on(lost, task_id, later)
    assert again["stamp"] == 1_800_000_000.0 != first.result["stamp"]
    assert again["draw"] == first.result["draw"]

    # An OS crash after the next ordinary commit: both on disk, both replayed
    kept = images["kept"]
    replayed = await run_on(kept, task_id, later)
    assert replayed == first.result
