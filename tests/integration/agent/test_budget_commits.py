"""What a budgeted agent loop commits, counted on a real SQLite store with the spend ledger
in the store's file (as the node runs it), and on a PostgreSQL store with the ledger in its
database, and what it leaves reserved.

A model call that follows a tool call needs no commit of its own for its reservation: it
was taken with the previous call's settle (one lazy commit with that call's journal
record), and a sync of the task's commits (an fsync of the WAL, started while the tool
ran, or by the call itself after a tool call the runtime denied, which writes nothing)
made it durable before the call was sent; the tool's record stays lazy. Whatever way the
loop ends, nothing stays reserved.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import sqlite3
from typing import Any

import msgspec
import pytest
from tests._crash import crash_image
from tests._postgres import require_postgres
from tests.integration.adapters._scripted import Scripted

from stalwart.agent import LLMAgent, Resources, TaskContext, run_llm_agent
from stalwart.db._metrics import COMMIT_BATCH, COMMITS, LAZY_COMMITS, SYNCS
from stalwart.durable import PostgresStore, Runner, SQLiteStore, Store
from stalwart.guard import Budget, Security, SpendLedger
from stalwart.guard._db import GuardDB
from stalwart.llm import Message, Price, PriceTable, ToolCall
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.testing import postgres_database
from stalwart.tools import ToolRegistry, tool

looked_up: list[int] = []
started = asyncio.Event()


@tool(scopes=["orders:read"])
async def look(order_id: int) -> dict[str, Any]:
    """Look an order up."""
    looked_up.append(order_id)
    return {"order_id": order_id, "status": "shipped"}


@tool(scopes=["admin"])
async def wipe(order_id: int) -> dict[str, Any]:
    """Never granted to the agent below."""
    raise AssertionError("a denied tool never runs")


@tool(scopes=["orders:read"])
async def stall(order_id: int) -> dict[str, Any]:
    """Waits until the task is cancelled."""
    started.set()
    await asyncio.Event().wait()
    return {}


@tool(scopes=["orders:read"])
async def history(order_id: int) -> dict[str, Any]:
    """An order's long history (its result makes the next prompt grow by ~8 KB)."""
    return {"order_id": order_id, "events": ["shipped, then returned"] * 400}


AGENT = LLMAgent(
    name="support",
    system="Help.",
    model="main",
    tools=[look, wipe, stall, history],
    scopes=["orders:read"],
    max_steps=5,
)
LEASE_S = 3600.0
"""Long: a lease renewal (every third of it, on shared ticks) never falls among the
counted commits."""
PRICES = PriceTable({"scripted:model": Price(1.0, 2.0)})


class Billed(Scripted):
    """The scripted model, billing each call what :data:`PRICES` says it costs."""

    async def complete(self, request: Any, *, timeout: float | None = None) -> Any:
        response = await super().complete(request, timeout=timeout)
        cost = PRICES.cost(self.name, response.usage)
        return msgspec.structs.replace(response, cost_usd=cost)


def calls(*names: str) -> Message:
    return Message(
        "assistant",
        tool_calls=tuple(ToolCall(f"c{i}", n, {"order_id": 7}) for i, n in enumerate(names)),
    )


def counted() -> tuple[float, float]:
    """(ordinary writing commits, lazy writing commits) so far in this process."""
    wrote, lazy = COMMITS.labels("true")._value.get(), LAZY_COMMITS.labels("true")._value.get()
    return wrote - lazy, lazy


def syncs() -> float:
    """WAL fsyncs made on request (``Database.sync``) so far in this process."""
    return SYNCS.labels("sqlite")._value.get()


def all_transactions() -> float:
    """Transactions this process's SQLite writers committed, reads included."""
    return COMMITS.labels("false")._value.get() + COMMITS.labels("true")._value.get()


def reserved(path: pathlib.Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM guard_reservations").fetchone()[0])
    finally:
        conn.close()


class Budgeted:
    """The loop in this process with a task budget, its ledger in the store's file (or
    at ``path``, a URL: the store's PostgreSQL database)."""

    def __init__(self, path: pathlib.Path | str, store: Store, client: Billed) -> None:
        self.ledger = SpendLedger(path if isinstance(path, str) else f"sqlite:///{path}")
        self.client = client
        events = EventBus(log=False)
        self.resources = Resources(
            agent="support",
            models={"main": client},
            tools=ToolRegistry(AGENT.tools, breakers=BreakerRegistry()),
            scopes=frozenset(AGENT.scopes),
            callable_agents=frozenset(),
            runtime=None,
            events=events,
            security=Security(budget=Budget(task_usd=5.0)),
            ledger=self.ledger,
            prices=PRICES,
        )
        self.runner = Runner(store, owner="inline", events=events, lease_seconds=LEASE_S)

    async def workflow(self, ctx: Any, value: Any) -> Any:
        return await run_llm_agent(TaskContext(ctx, self.resources, model="main"), AGENT, value)

    async def submit(self) -> str:
        """A task to run, the ledger's tables made first (not counted with the task)."""
        await asyncio.to_thread(self.ledger.spent, "day", "*")
        return await self.runner.submit("support", {"text": "Where is order 7?"})


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> Any:
    s = SQLiteStore(str(tmp_path / "b.db"))  # durability "full"
    await s.open()
    yield s
    await s.close()


async def test_a_model_call_after_a_tool_call_reserves_without_a_commit_of_its_own(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    client = Billed([calls("look"), calls("look"), Message("assistant", content="Shipped.")])
    loop = Budgeted(tmp_path / "b.db", store, client)
    try:
        task_id = await loop.submit()
        before, synced = counted(), syncs()
        result = await loop.runner.run(task_id, loop.workflow)
        ordinary, lazy = (a - b for a, b in zip(counted(), before, strict=True))
        synced = syncs() - synced
    finally:
        loop.ledger.close()
    assert result.status == "succeeded" and result.result["answer"] == "Shipped."
    assert client.calls == 3 and looked_up[-2:] == [7, 7]
    # the first call's reservation and the result: the second and third calls'
    # reservations rode on the settles before them, each made durable by a WAL fsync
    # that ran while the tool before it did
    assert ordinary == 2
    assert synced == 2
    assert lazy == 6  # the claim, each model call's record with its settle, each tool's
    assert reserved(tmp_path / "b.db") == 0
    # the spend is the calls' cost: 3 x (10 prompt x $1 + 5 completion x $2) per M tokens
    assert loop.ledger.spent("task", task_id, "") == pytest.approx(3 * 20 / 1e6)


class Watched(Billed):
    """Billed, noting at each call the WAL's size as the last fsync left it."""

    def __init__(self, replies: list[Message], synced_wal: list[int]) -> None:
        super().__init__(replies)
        self.synced_wal = synced_wal
        self.at_call: list[int] = []

    async def complete(self, request: Any, *, timeout: float | None = None) -> Any:
        self.at_call.append(self.synced_wal[-1] if self.synced_wal else 0)
        return await super().complete(request, timeout=timeout)


def kept_if_cut(path: pathlib.Path, wal_bytes: int, into: pathlib.Path) -> tuple[int, int]:
    """(reservations, model calls' journal records) in the database as an OS crash leaves
    it when its WAL reached the disk up to ``wal_bytes`` (nothing checkpointed into the
    main file meanwhile)."""
    image = crash_image(path, wal_bytes, into)
    conn = sqlite3.connect(image)
    try:
        models = conn.execute("SELECT count(*) FROM stalwart_journal WHERE name = 'model'")
        return reserved(image), int(models.fetchone()[0])
    finally:
        conn.close()


async def test_the_reservation_taken_ahead_is_on_disk_before_the_call_it_is_for_is_sent(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked on the files: the WAL as the sync's fsync left it, cut where an OS crash
    would cut it, holds the next call's reservation before that call goes out."""
    from stalwart.db import _sqlite as kernel

    path = tmp_path / "b.db"
    synced_wal: list[int] = []
    real = kernel._fsync

    def noting(wal: str) -> None:
        size = os.path.getsize(wal)
        real(wal)
        synced_wal.append(size)

    monkeypatch.setattr(kernel, "_fsync", noting)
    s = SQLiteStore(str(path), wal_autocheckpoint=100_000)  # no checkpoint: all in the WAL
    await s.open()
    client = Watched([calls("look"), Message("assistant", content="Shipped.")], synced_wal)
    loop = Budgeted(path, s, client)
    files = tmp_path / "files"  # the store's files as they are at the end of the loop
    try:
        task_id = await loop.submit()

        async def imaging(ctx: Any, value: Any) -> Any:
            result = await loop.workflow(ctx, value)
            files.mkdir()
            for suffix in ("", "-wal"):
                shutil.copyfile(f"{path}{suffix}", files / f"b.db{suffix}")
            return result

        result = await loop.runner.run(task_id, imaging)
    finally:
        loop.ledger.close()
        await s.close()
    assert result.status == "succeeded" and client.calls == 2
    assert len(synced_wal) == 1  # one sync: the one started while the tool ran
    # at the second call, the fsynced part of the WAL holds its reservation: the first
    # call's record, committed with the first call's settle and this reservation, is in
    # it (and the first call's own reservation, which the settle ended, is not)
    at_second = client.at_call[1]
    assert at_second == synced_wal[0] > 0
    assert kept_if_cut(files / "b.db", at_second, tmp_path / "cut") == (1, 1)
    assert reserved(path) == 0


async def test_a_reservation_nothing_made_durable_is_synced_before_the_call(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    # the denied call writes nothing: the reservation taken ahead is not on disk yet
    client = Billed([calls("wipe"), Message("assistant", content="Cannot.")])
    loop = Budgeted(tmp_path / "b.db", store, client)
    try:
        task_id = await loop.submit()
        before, synced = counted(), syncs()
        result = await loop.runner.run(task_id, loop.workflow)
        ordinary, lazy = (a - b for a, b in zip(counted(), before, strict=True))
        synced = syncs() - synced
    finally:
        loop.ledger.close()
    assert result.status == "succeeded"
    assert result.result["usage"]["denied_tool_calls"] == 1
    assert ordinary == 2  # the first reservation, the result
    assert synced == 1  # made by the second call, which found the reservation not on disk
    assert lazy == 3  # the claim, each model call's record with its settle
    assert reserved(tmp_path / "b.db") == 0


async def test_a_prompt_that_outgrew_the_reservation_taken_ahead_reserves_again(
    tmp_path: pathlib.Path, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stalwart.agent._context.AHEAD_TOKENS", 16)  # no room for 8 KB
    client = Billed([calls("history"), Message("assistant", content="Returned.")])
    loop = Budgeted(tmp_path / "b.db", store, client)
    try:
        task_id = await loop.submit()
        before = counted()
        result = await loop.runner.run(task_id, loop.workflow)
        ordinary, lazy = (a - b for a, b in zip(counted(), before, strict=True))
    finally:
        loop.ledger.close()
    assert result.status == "succeeded" and result.result["answer"] == "Returned."
    # the first reservation, the second (the one taken ahead ended in its transaction),
    # the result
    assert ordinary == 3
    assert lazy == 4  # the claim, each model call's record with its settle, the tool's
    assert reserved(tmp_path / "b.db") == 0
    assert loop.ledger.spent("task", task_id, "") == pytest.approx(2 * 20 / 1e6)


async def test_a_loop_cancelled_in_a_tool_call_leaves_nothing_reserved(
    tmp_path: pathlib.Path, store: SQLiteStore
) -> None:
    started.clear()
    client = Billed([calls("stall"), Message("assistant", content="never")])
    loop = Budgeted(tmp_path / "b.db", store, client)
    try:
        task_id = await loop.submit()
        run = asyncio.ensure_future(loop.runner.run(task_id, loop.workflow))
        async with asyncio.timeout(30):
            await started.wait()
        assert reserved(tmp_path / "b.db") == 1  # the next call's, taken with the settle
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    finally:
        loop.ledger.close()
    assert client.calls == 1
    assert reserved(tmp_path / "b.db") == 0


async def test_a_first_lease_reads_nothing_and_a_resumed_one_reads_its_journal(
    store: SQLiteStore,
) -> None:
    runner = Runner(store, owner="a", events=EventBus(log=False), lease_seconds=LEASE_S)
    task_id = await runner.submit("support", {})
    first = await store.acquire("a", LEASE_S, task_id=task_id)
    assert first is not None and first.fresh
    await store.release(first)
    again = await store.acquire("a", LEASE_S, task_id=task_id)
    assert again is not None and not again.fresh
    transactions = all_transactions()

    async def workflow(ctx: Any, value: Any) -> Any:
        return await ctx.step("one", lambda: 1)

    result = await runner.execute(again, workflow)
    assert result.status == "succeeded"
    assert all_transactions() - transactions == 3  # the journal read, the step, the result

    fresh_id = await runner.submit("support", {})
    transactions = all_transactions()
    assert (await runner.run(fresh_id, workflow)).status == "succeeded"
    assert all_transactions() - transactions == 3  # the claim, the step, the result: no read


# -- PostgreSQL: the settle and the next reservation join the model record there too -----
@pytest.fixture
async def pg_store() -> Any:
    """A PostgreSQL store on a fresh database, and that database's URL."""
    require_postgres()
    with postgres_database("stalwart_budget") as url:
        s = PostgresStore(url)  # durability "full"
        await s.open()
        try:
            yield s, url
        finally:
            await s.close()


def batches() -> float:
    """Group commits of this process's database kernels so far."""
    for metric in COMMIT_BATCH.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return float(sample.value)
    return 0.0


class Ledgered:
    """Counts the transactions the spend ledger runs through its own connection."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = 0
        run = GuardDB.run

        def counted(db: GuardDB, fn: Any, *args: Any, **kwargs: Any) -> Any:
            self.runs += 1
            return run(db, fn, *args, **kwargs)

        monkeypatch.setattr(GuardDB, "run", counted)


def pg_rows(url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgres
async def test_on_postgres_each_model_step_is_one_commit_with_its_settle_and_next_reservation(
    pg_store: tuple[PostgresStore, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger in the store's PostgreSQL database: only the first call reserves through
    the ledger's own connection; every settle, and the reservation of the call after a
    tool call, is in the model record's transaction (under the ledger's advisory lock,
    committed synchronously: durable at once, so even after a denied tool call, which
    commits nothing, the next call needs no reservation of its own)."""
    store, url = pg_store
    assert store.joins(url) and not store.joins_lazily()
    script = [calls("look"), calls("wipe"), Message("assistant", content="Shipped.")]
    client = Billed(script)
    loop = Budgeted(url, store, client)
    ledgered = Ledgered(monkeypatch)
    try:
        task_id = await loop.submit()
        guard_before, store_before = ledgered.runs, batches()
        result = await loop.runner.run(task_id, loop.workflow)
        guard_runs, store_commits = ledgered.runs - guard_before, batches() - store_before
    finally:
        loop.ledger.close()
    assert result.status == "succeeded" and result.result["answer"] == "Shipped."
    assert result.result["usage"]["denied_tool_calls"] == 1
    assert guard_runs == 1  # the first call's reservation; nothing else of the ledger's own
    # the claim (a first lease: no journal read), three model records (each with its
    # settle, the first two with the next call's reservation), the tool's record, the
    # result
    assert store_commits == 6
    assert pg_rows(url, "guard_reservations") == 0
    assert loop.ledger.spent("task", task_id, "") == pytest.approx(3 * 20 / 1e6)
