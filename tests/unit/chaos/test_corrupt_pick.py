"""The journal-corruption faults never damage a record an earlier fault damaged: the flip
is its own inverse, so a second flip of one record repaired it and chaos then reported
the first damage "undetected" (LC-2 on the LangGraph example, 2 of 4 runs)."""

from __future__ import annotations

import pathlib
import sqlite3

import pytest

from stalwart.chaos._faults import Skip, _flip, _pick_record, safe_clause
from stalwart.durable import JournalEntry, SQLiteStore

pytestmark = pytest.mark.timeout(60)


async def test_a_damaged_record_is_never_picked_again(tmp_path: pathlib.Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        await store.create_task("support", {"text": "hi"}, task_id="t1")
        lease = await store.acquire("node/support", 30.0, task_id="t1")
        assert lease is not None
        await store.append(
            lease,
            [
                JournalEntry(0, "step", "langgraph:thread", {"base": None}),
                JournalEntry(1, "step", "model", {"content": "one"}),
                JournalEntry(2, "step", "tool:lookup_order", {"order": 1}),
                JournalEntry(3, "step", "tool:refund", {"refund": 1}),  # a side effect's
            ],
        )
        conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        try:
            safe = safe_clause(["tool:lookup_order"])
            picked = []
            for _ in range(2):
                task_id, seq, record, _owner = _pick_record(conn, safe)
                picked.append(seq)
                conn.execute(
                    "UPDATE stalwart_journal SET record = ? WHERE task_id = ? AND seq = ?",
                    (_flip(record), task_id, seq),
                )
            assert picked == [2, 1]  # the newest safe record, then the next intact one
            with pytest.raises(Skip, match="intact"):
                _pick_record(conn, safe)
        finally:
            conn.close()
        # both damages are still there to be found: nothing repaired either
        load = await store.load_journal("t1")
        assert [seq for seq, _ in load.quarantined] == [1, 2, 3]
        assert {r.seq for r in await store.quarantined("t1")} == {1, 2, 3}
    finally:
        await store.close()
