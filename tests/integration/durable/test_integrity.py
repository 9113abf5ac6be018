"""Corruption (acceptance 4): flipped bytes and truncation in records and in the SQLite file.

Every damage must be detected (quarantined, logged, counted, announced), none may
crash the node or produce a wrong result, and recovery follows the rules: resume
from the last good checkpoint and replay from there; nothing good left → a clear
failure.
"""

from __future__ import annotations

import pathlib
import random
import shutil
from collections.abc import Callable
from typing import Any

import pytest

from stalwart.durable import Context, Runner, SQLiteStore, Store
from stalwart.durable._metrics import CORRUPT_RECORDS
from stalwart.errors import CorruptRecord, StalwartError
from stalwart.testing import FakeClock

from ._damage import damage_task_input, delete_record, read_record, write_record

MakeStore = Callable[..., Any]
STEPS = 12


class Crash(BaseException):
    pass


def chain(crash_at: int | None = None, ran: list[int] | None = None) -> Any:
    """A task whose every step depends on the one before; random is seeded per position."""

    async def wf(ctx: Context, inp: Any) -> Any:
        acc = inp
        for i in range(STEPS):
            if i % 4 == 2:
                acc = acc * 31 + int(await ctx.random() * 1000)
                continue

            def step(acc: int = acc, i: int = i) -> int:
                if ran is not None:
                    ran.append(i)
                if i == crash_at:
                    raise Crash
                return (acc * 7 + i) % 1_000_003

            acc = await ctx.step(f"s{i}", step)
        return acc

    return wf


async def _reference(store: Store, clock: FakeClock) -> Any:
    runner = Runner(store, clock=clock)
    return (await runner.run(await runner.submit("chain", 3, seed=5), chain())).result


def _flip(data: bytes, rng: random.Random) -> bytes:
    pos = rng.randrange(len(data))
    return data[:pos] + bytes([data[pos] ^ (1 << rng.randrange(8))]) + data[pos + 1 :]


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "delete"])
async def test_damaged_journal_record_is_detected_and_recovered(
    make_store: MakeStore, clock: FakeClock, damage: str
) -> None:
    store: Store = await make_store()
    expected = await _reference(store, clock)
    rng = random.Random(damage)
    for trial in range(8):
        runner = Runner(store, clock=clock)
        tid = await runner.submit("chain", 3, seed=5, task_id=f"{damage}-{trial}")
        with pytest.raises(Crash):
            await runner.run(tid, chain(crash_at=STEPS - 1))
        # A deleted *last* record is indistinguishable from one never written; a
        # deleted record with successors is a gap, and a gap is damage.
        victim = rng.randrange(STEPS - 2 if damage == "delete" else STEPS - 1)
        raw = read_record(store, tid, victim)
        if damage == "flip":
            write_record(store, tid, victim, _flip(raw, rng))
        elif damage == "truncate":
            write_record(store, tid, victim, raw[: rng.randrange(len(raw))])
        elif damage == "empty":
            write_record(store, tid, victim, None)
        else:
            delete_record(store, tid, victim)
        before = CORRUPT_RECORDS.labels(kind="step")._value.get()
        ran: list[int] = []
        resumed = await Runner(store, clock=clock).run(tid, chain(ran=ran), force=True)
        assert resumed.status == "succeeded" and resumed.result == expected
        # Recovery re-executed from the damage on, and only from there.
        assert ran and min(ran) >= victim - 2 and STEPS - 1 in ran
        quarantined = await store.quarantined(tid)
        assert quarantined, "damage was not quarantined"
        assert min(q.seq for q in quarantined) == victim + (damage == "delete")
        if damage != "delete":
            words = ("checksum", "truncat", "missing", "magic", "format")
            assert any(w in q.reason for q in quarantined for w in words)
            assert CORRUPT_RECORDS.labels(kind="step")._value.get() >= before
        events = store.events.recent("durable.record_quarantined")
        assert any(e["task_id"] == tid for e in events)


async def test_resume_from_last_good_checkpoint(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    tid = await runner.submit("cp", 0)
    ran: list[int] = []

    def make(crash_at: int | None) -> Any:
        async def wf(ctx: Context, start: Any) -> Any:
            state = ctx.restore() or {"i": 0, "acc": start}
            while state["i"] < 8:
                i = state["i"]

                def body(i: int = i, acc: int = state["acc"]) -> int:
                    ran.append(i)
                    if i == crash_at:
                        raise Crash
                    return acc * 3 + i

                state = {"i": i + 1, "acc": await ctx.step("body", body)}
                if i % 2 == 1:
                    await ctx.checkpoint(state)
            return state["acc"]

        return wf

    with pytest.raises(Crash):
        await runner.run(tid, make(7))
    # Journal: body0 body1 cp body2 body3 cp body4 body5 cp body6 -> positions 0..9.
    write_record(store, tid, 9, b"garbage")  # body6, after the last checkpoint
    write_record(store, tid, 1, b"")  # body1, before it: detected, does not matter
    ran.clear()
    result = await Runner(store, clock=clock).run(tid, make(None), force=True)
    expected = 0
    for i in range(8):
        expected = expected * 3 + i
    assert result.result == expected
    assert ran == [6, 7]  # resumed from the checkpoint at position 8
    assert sorted(q.seq for q in await store.quarantined(tid)) == [1, 9]


async def test_corrupt_checkpoint_falls_back_to_the_previous(
    make_store: MakeStore, clock: FakeClock
) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    tid = await runner.submit("cp", 0)

    async def wf(ctx: Context, start: Any) -> Any:
        state = ctx.restore() or {"n": 0}
        while state["n"] < 4:
            state = {"n": await ctx.step("inc", lambda n=state["n"]: n + 1)}
            await ctx.checkpoint(state)
        if ctx.attempt == 1:
            raise Crash
        return state

    with pytest.raises(Crash):
        await runner.run(tid, wf)
    write_record(store, tid, 7, read_record(store, tid, 7)[:-1])  # the last checkpoint
    result = await Runner(store, clock=clock).run(tid, wf, force=True)
    assert result.result == {"n": 4}
    assert [q.seq for q in await store.quarantined(tid)] == [7]


async def test_nothing_good_left_fails_clearly(make_store: MakeStore, clock: FakeClock) -> None:
    store: Store = await make_store()
    runner = Runner(store, clock=clock)
    tid = await runner.submit("chain", 3)
    damage_task_input(store, tid)
    with pytest.raises(StalwartError, match=r"truncated|checksum"):
        await runner.run(tid, chain())
    task = await store.get_task(tid)
    assert task is not None and task.status == "failed"
    assert task.outcome["type"] == "CorruptRecord"
    assert (await runner.run(tid, chain())).status == "failed"  # stays failed, no crash
    failed = [q for q in await store.quarantined(tid) if q.kind == "task"]
    assert failed, "the damaged task input was not quarantined"


def _prepare_sqlite(path: pathlib.Path, clock: FakeClock) -> Any:
    import asyncio

    async def build() -> Any:
        async with SQLiteStore(path, clock=clock) as store:
            expected = await _reference(store, clock)
            runner = Runner(store, clock=clock)
            for n in range(3):
                tid = await runner.submit("chain", 3, seed=5, task_id=f"half-{n}")
                with pytest.raises(Crash):
                    await runner.run(tid, chain(crash_at=5 + 2 * n))
            return expected

    return asyncio.run(build())


def test_damaged_sqlite_file_never_crashes_or_lies(tmp_path: pathlib.Path) -> None:
    import asyncio

    clock = FakeClock()
    pristine = tmp_path / "pristine.db"
    expected = _prepare_sqlite(pristine, clock)
    size = pristine.stat().st_size
    rng = random.Random(2024)
    outcomes: dict[str, int] = {}
    for trial in range(40):
        path = tmp_path / f"t{trial}" / "store.db"
        path.parent.mkdir()
        shutil.copy(pristine, path)
        data = bytearray(path.read_bytes())
        if trial % 4 == 3:
            data = data[: rng.randrange(size)]
        else:
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(size)
                data[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))

        damaged = path.read_bytes()

        async def resume(path: pathlib.Path = path, trial: int = trial) -> str:
            store = SQLiteStore(path, clock=clock)
            try:
                await store.open()
            except CorruptRecord as exc:
                # Refused, never replaced: the message names the file and the way out.
                assert str(path) in str(exc) and "stalwart store recover" in str(exc)
                return "refused"
            try:
                kind = "opened"
                for n in range(3):
                    try:
                        r = await Runner(store, clock=clock).run(f"half-{n}", chain(), force=True)
                    except StalwartError as exc:  # a clear, typed error is acceptable
                        kind += f"/{type(exc).__name__}"
                        continue
                    if r.status == "succeeded":
                        assert r.result == expected, f"trial {trial}: wrong result"
                    else:
                        kind += f"/failed:{r.result['type']}"
                return kind
            finally:
                await store.close()

        kind = asyncio.run(resume())
        outcomes[kind] = outcomes.get(kind, 0) + 1
        if kind == "refused":
            assert path.read_bytes() == damaged, "a refused file was changed"
            assert not list(path.parent.glob("store.db.corrupt-*"))
    print("file-damage outcomes:", outcomes)
    assert sum(outcomes.values()) == 40, outcomes


async def test_unreadable_file_refuses_to_open_with_the_recovery_command(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "store.db"
    content = b"this is not a database at all" * 200
    path.write_bytes(content)
    with pytest.raises(CorruptRecord) as info:
        await SQLiteStore(path).open()
    message = str(info.value)
    assert str(path) in message
    assert "stalwart store check" in message and "stalwart store recover" in message
    # Never moved aside, never replaced by an empty store: the ledger is still there.
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]


async def test_unopenable_path_is_unavailable_not_quarantined(tmp_path: pathlib.Path) -> None:
    from stalwart.errors import StoreUnavailable

    target = tmp_path / "a-directory.db"
    target.mkdir()
    with pytest.raises(StoreUnavailable, match=r"a-directory\.db"):
        await SQLiteStore(target).open()
    assert target.is_dir() and not list(tmp_path.glob("*.corrupt-*"))
