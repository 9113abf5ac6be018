"""The database layer under real faults: a PostgreSQL server restarted and SIGKILLed under
load, two processes migrating one fresh database at once, a corrupt SQLite file.

The server is a private one (:class:`stalwart.testing._pgserver.PostgresServer`) on its
own port, so restarting it disturbs no other test. Longer loops: ``bench/faults.py``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pathlib
from collections.abc import Iterator

import pytest

from stalwart.durable import PostgresStore, SQLiteStore
from stalwart.errors import CorruptRecord
from stalwart.guard import SpendLedger
from stalwart.testing import postgres_database, postgres_reachable
from stalwart.testing._pgserver import (
    PostgresServer,
    fault_and_recover,
    pg_binaries,
    start_like_a_node,
    store_fault_worker,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    if pg_binaries() is None:
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed")
    with PostgresServer() as server:
        yield server


async def test_a_postgres_restart_and_a_kill_lose_and_duplicate_nothing(
    pg_server: PostgresServer,
) -> None:
    store = PostgresStore(pg_server.url, timeout=20)
    await store.open()
    ledger = SpendLedger(pg_server.url)
    try:
        ids = [f"t{i:03d}" for i in range(120)]
        for tid in ids:
            await store.create_task("a", {"n": tid}, task_id=tid)
        ledger.add_spent("day", "*", 1.0)
        done: list[str] = []
        errors: list[str] = []
        progress = asyncio.Event()
        workers = [
            asyncio.create_task(store_fault_worker(store, f"w{i}", done, errors, progress))
            for i in range(4)
        ]
        recoveries: list[float] = []
        for fault in ("restart", "kill"):
            recoveries.append(
                await fault_and_recover(pg_server, fault, done, workers, progress, down_s=1.0)
            )
            # The ledger's connection died with the server: it is reopened, not kept.
            assert ledger.add_spent("day", "*", 1.0) > 0
        await asyncio.gather(*workers)
        assert sorted(done) == ids, "a task was lost or run twice"
        for tid in ids:
            task = await store.get_task(tid)
            assert task is not None and task.status == "succeeded" and task.outcome == tid
            assert [e.seq for e in (await store.load_journal(tid)).entries] == [0, 1]
        assert ledger.spent("day", "*") == pytest.approx(3.0)
        assert max(recoveries) < 10.0, recoveries
        print("recovery seconds:", [round(r, 2) for r in recoveries], "errors:", len(errors))
    finally:
        ledger.close()
        await store.close()


def test_two_processes_starting_on_a_fresh_database_never_race() -> None:
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable")
    ctx = multiprocessing.get_context("fork")  # the processes start with stalwart loaded
    errors = ctx.Queue()
    for _ in range(5):
        with postgres_database("stalwart_race") as url:
            barrier = ctx.Barrier(2)
            procs = [
                ctx.Process(target=start_like_a_node, args=(url, barrier, errors)) for _ in range(2)
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join(60)
            assert [p.exitcode for p in procs] == [0, 0], errors.get(timeout=1)


def test_a_corrupt_sqlite_store_refuses_to_start_and_can_be_salvaged(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stalwart.cli import main

    path = tmp_path / "store.db"

    async def fill() -> None:
        async with SQLiteStore(path, durability="off") as store:
            for i in range(300):
                await store.create_task("a", {"text": "x" * 200, "i": i}, task_id=f"t{i:03d}")

    asyncio.run(fill())
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    data[10 * page : 11 * page] = b"\xa5" * page  # one page of the tasks table destroyed
    path.write_bytes(bytes(data))

    with pytest.raises(CorruptRecord) as info:
        asyncio.run(SQLiteStore(path).open())
    assert str(path) in str(info.value) and "stalwart store recover" in str(info.value)
    assert path.read_bytes() == bytes(data), "the refused file was changed"

    capsys.readouterr()
    assert main(["store", "check", f"sqlite:///{path}"]) == 1
    assert '"sound": false' in capsys.readouterr().out
    new = tmp_path / "new.db"
    code = main(["store", "recover", f"sqlite:///{path}", "--to", str(new)])
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    assert '"copied"' in out.out

    async def read_new() -> int:
        async with SQLiteStore(new) as store:
            return len(await store.list_tasks(limit=1000))

    salvaged = asyncio.run(read_new())
    report = json.loads(out.out)
    tasks = next(t for t in report["tables"] if t["table"] == "stalwart_tasks")
    assert 0 < salvaged == tasks["copied"] <= 300  # the report says what the new file holds
    if code == 1:  # a damaged page was met: the report names it
        assert "could not be read" in out.err
        assert any(t["errors"] or t["lost"] for t in report["tables"])
    else:
        assert salvaged == 300
    assert main(["store", "check", f"sqlite:///{new}"]) == 0
    # Refused again: --to must be a new file.
    assert main(["store", "recover", f"sqlite:///{path}", "--to", str(new)]) == 2
