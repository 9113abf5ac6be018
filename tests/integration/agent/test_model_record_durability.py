"""What ``full`` durability guarantees for a model call's journal record (docs/durable.md,
*What ``full`` guarantees*): it is committed before the reply returns, without an fsync of
its own, and the next ordinary commit -- here a side effect's ledger entry, written before
the effect runs -- makes it durable with its own.

Checked on disk, on a real SQLite store: the record's WAL frames lie before the effect's
fsynced commit (one file, which an fsync makes durable up to its end), a second
connection reads it, and two crash images -- the files as an OS crash would leave them
right after the model call (the unsynced tail lost) and right after the effect's entry --
resume to the same result: the first makes the model call again, the second does not.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
from typing import Any

from tests._crash import crash_image
from tests.integration.adapters._scripted import Scripted

from stalwart.agent import Resources, TaskContext
from stalwart.db._metrics import COMMITS, LAZY_COMMITS
from stalwart.durable import Runner, SQLiteStore
from stalwart.llm import Message
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry, tool

REPLY = Message("assistant", content="Refund 500 cents on order 7.")


def committed() -> tuple[float, float]:
    """(commits that wrote, of which lazy) so far in this process."""
    return COMMITS.labels("true")._value.get(), LAZY_COMMITS.labels("true")._value.get()


def resources(client: Scripted) -> Resources:
    return Resources(
        agent="support",
        models={"main": client},
        tools=ToolRegistry([], breakers=BreakerRegistry()),
        scopes=frozenset(),
        callable_agents=frozenset(),
        runtime=None,
        events=EventBus(log=False),
    )


def journal(path: pathlib.Path, task_id: str) -> list[tuple[int, str, str]]:
    """The task's journal as a second, read-only connection sees it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT seq, kind, name FROM stalwart_journal WHERE task_id = ? ORDER BY seq",
            (task_id,),
        ).fetchall()
    finally:
        conn.close()
    return [(int(s), str(k), str(n)) for s, k, n in rows]


class Run:
    """One task: an ordinary step, a model call, a side effect; marks what was on disk."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.refunds: list[str] = []  # idempotency keys the "payment service" received
        self.marks: dict[str, Any] = {}

    def wal(self) -> int:
        return pathlib.Path(f"{self.path}-wal").stat().st_size

    def workflow(self, client: Scripted, *, observe: bool) -> Any:
        held = resources(client)

        async def run(ctx: Any, value: Any) -> Any:
            tctx = TaskContext(ctx, held, model="main")
            await tctx.step("prepare", lambda: {"order": 7})  # an ordinary, fsynced commit
            if observe:
                self.marks["wal_before_model"] = self.wal()
                self.marks["before_model"] = committed()
            reply = await tctx.call_model([{"role": "user", "content": "Refund order 7."}])
            if observe:
                self.marks["after_model"] = committed()
                self.marks["wal_after_model"] = self.wal()
                self.marks["seen_after_model"] = journal(self.path, ctx.task_id)

            def refund(amount: int, *, idempotency_key: str) -> dict[str, Any]:
                # runs once the effect's "started" entry is committed (and fsynced)
                if observe:
                    self.marks["after_started"] = committed()
                    self.marks["wal_at_effect"] = self.wal()
                    self.marks["seen_at_effect"] = journal(self.path, ctx.task_id)
                self.refunds.append(idempotency_key)
                return {"refunded": amount}

            done = await tctx.durable.effect("refund", refund, 500, deduplicated=True)
            return {"answer": reply["content"], "refund": done}

        return run


async def test_a_model_record_is_lazy_and_the_next_effect_commit_makes_it_durable(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "t.db"
    # no checkpoint during the run: every commit stays in the WAL, in order
    store = SQLiteStore(str(path), wal_autocheckpoint=100_000)  # durability "full"
    await store.open()
    run = Run(path)
    client = Scripted([REPLY])
    try:
        runner = Runner(store, owner="node-a", events=EventBus(log=False))
        task_id = await runner.submit("support", {"text": "refund"})
        images: dict[str, pathlib.Path] = {}
        workflow = run.workflow(client, observe=True)

        async def imaging(ctx: Any, value: Any) -> Any:
            result = await workflow(ctx, value)
            # the files are still open and unchanged since the marks: cut the images now
            images["after_model"] = crash_image(
                path, run.marks["wal_before_model"], tmp_path / "crash-after-model"
            )
            images["after_effect"] = crash_image(
                path, run.marks["wal_at_effect"], tmp_path / "crash-after-effect"
            )
            return result

        result = await runner.run(task_id, imaging)
    finally:
        await store.close()
    assert result is not None and result.status == "succeeded", result
    expected = {"answer": REPLY.content, "refund": {"refunded": 500}}
    assert result.result == expected
    assert client.calls == 1 and len(run.refunds) == 1
    marks = run.marks

    # the model call's record (seq 1) was one lazy commit: no fsync of its own ...
    wrote = marks["after_model"][0] - marks["before_model"][0]
    lazy = marks["after_model"][1] - marks["before_model"][1]
    assert (wrote, lazy) == (1, 1)
    # ... committed where others read it: in the WAL, after everything before it
    assert (1, "step", "model") in marks["seen_after_model"]
    assert marks["wal_after_model"] > marks["wal_before_model"]
    # the effect's "started" entry was an ordinary commit (fsynced), later in the same WAL
    wrote = marks["after_started"][0] - marks["after_model"][0]
    lazy = marks["after_started"][1] - marks["after_model"][1]
    assert wrote >= 1 and lazy == 0
    assert marks["wal_at_effect"] > marks["wal_after_model"]
    assert (1, "step", "model") in marks["seen_at_effect"]

    # An OS crash right after the model call: the unsynced tail (the model record) is lost,
    # and the resumed task asks the model again -- as after a crash just before the call.
    lost = images["after_model"]
    task_journal = journal(lost, task_id)
    assert (0, "step", "prepare") in task_journal
    assert (1, "step", "model") not in task_journal
    again = Scripted([REPLY])
    resumed = await resume(lost, task_id, Run(lost), again)
    assert resumed.result == expected and again.calls == 1

    # An OS crash once the effect's entry is fsynced: the model record is on disk with it,
    # and the resumed task neither asks the model again nor loses the effect's key.
    kept = images["after_effect"]
    assert (1, "step", "model") in journal(kept, task_id)
    again = Scripted([])
    rerun = Run(kept)
    resumed = await resume(kept, task_id, rerun, again)
    assert resumed.result == expected and again.calls == 0
    assert rerun.refunds == run.refunds  # the same idempotency key, deduplicated upstream


async def resume(path: pathlib.Path, task_id: str, run: Run, client: Scripted) -> Any:
    store = SQLiteStore(str(path))
    await store.open()
    try:
        runner = Runner(store, owner="node-b", events=EventBus(log=False))
        # on disk the task is still leased by the crashed node: take it over
        result = await runner.run(task_id, run.workflow(client, observe=False), force=True)
    finally:
        await store.close()
    assert result is not None and result.status == "succeeded", result
    return result


LOOKUPS: list[int] = []  # orders the read-only tool below looked up, in this process


@tool(scopes=["orders:read"])
async def lookup(order_id: int) -> dict[str, Any]:
    """An order's status (no side effect: safe to run again)."""
    LOOKUPS.append(order_id)
    return {"order_id": order_id, "status": "delivered"}


class Claimed(Run):
    """A task whose claim and read-only tool call are lazy commits, then a side effect."""

    def workflow(self, client: Scripted, *, observe: bool) -> Any:
        held = dataclasses.replace(
            resources(client),
            tools=ToolRegistry([lookup], breakers=BreakerRegistry()),
            scopes=frozenset({"orders:read"}),
        )

        async def run(ctx: Any, value: Any) -> Any:
            tctx = TaskContext(ctx, held, model="main")
            if observe:
                self.marks["after_claim"] = committed()
            found = await tctx.call_tool("lookup", {"order_id": 7})
            if observe:
                self.marks["after_tool"] = committed()
                self.marks["seen_after_tool"] = journal(self.path, ctx.task_id)

            def refund(amount: int, *, idempotency_key: str) -> dict[str, Any]:
                if observe:
                    self.marks["wal_at_effect"] = self.wal()
                self.refunds.append(idempotency_key)
                return {"refunded": amount}

            done = await tctx.durable.effect("refund", refund, 500, deduplicated=True)
            return {"status": found.value["status"], "refund": done}

        return run


async def test_a_claim_and_a_read_only_tool_record_are_lazy_until_the_effect_commit(
    tmp_path: pathlib.Path,
) -> None:
    """The claim and the record of a tool without side effects are committed without an
    fsync of their own; an OS crash before the effect's fsynced entry loses both, and the
    task is then as it was before the claim: pending, taken by a plain claim (no takeover),
    its tool run again. After the effect's entry nothing is run again."""
    path = tmp_path / "t.db"
    store = SQLiteStore(str(path), wal_autocheckpoint=100_000)  # durability "full"
    await store.open()
    run = Claimed(path)
    LOOKUPS.clear()
    images: dict[str, pathlib.Path] = {}
    try:
        runner = Runner(store, owner="node-a", events=EventBus(log=False))
        task_id = await runner.submit("support", {"text": "refund"})
        wal_submitted = run.wal()  # the submit was fsynced: on disk up to here
        before_claim = committed()
        workflow = run.workflow(Scripted([]), observe=True)

        async def imaging(ctx: Any, value: Any) -> Any:
            result = await workflow(ctx, value)
            images["before_effect"] = crash_image(path, wal_submitted, tmp_path / "c1")
            images["after_effect"] = crash_image(path, run.marks["wal_at_effect"], tmp_path / "c2")
            return result

        result = await runner.run(task_id, imaging)
    finally:
        await store.close()
    expected = {"status": "delivered", "refund": {"refunded": 500}}
    assert result is not None and result.status == "succeeded" and result.result == expected
    marks = run.marks
    claim = tuple(a - b for a, b in zip(marks["after_claim"], before_claim, strict=True))
    assert claim == (1, 1)  # one writing commit, lazy
    tool_record = tuple(
        a - b for a, b in zip(marks["after_tool"], marks["after_claim"], strict=True)
    )
    assert tool_record == (1, 1)
    assert (0, "step", "tool:lookup") in marks["seen_after_tool"]  # committed, readable
    assert LOOKUPS == [7]

    # An OS crash before the effect's entry: the claim and the tool's record are lost.
    lost = images["before_effect"]
    assert journal(lost, task_id) == []
    conn = sqlite3.connect(lost)
    try:
        status, token = conn.execute(
            "SELECT status, lease_token FROM stalwart_tasks WHERE id = ?", (task_id,)
        ).fetchone()
    finally:
        conn.close()
    assert (status, token) == ("pending", 0)
    rerun = Claimed(lost)
    store = SQLiteStore(str(lost))
    await store.open()
    try:  # a plain claim, no takeover: nobody holds the task any more
        again = await Runner(store, owner="node-b", events=EventBus(log=False)).run(
            task_id, rerun.workflow(Scripted([]), observe=False)
        )
    finally:
        await store.close()
    assert again is not None and again.result == expected
    assert LOOKUPS == [7, 7]  # the read-only tool ran again

    # After the effect's fsynced entry, the claim and the tool's record are on disk too.
    kept = images["after_effect"]
    assert (0, "step", "tool:lookup") in journal(kept, task_id)
    resumed = await resume(kept, task_id, Claimed(kept), Scripted([]))
    assert resumed.result == expected
    assert LOOKUPS == [7, 7]  # replayed from the journal, not run
