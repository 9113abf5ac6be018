"""An in-memory-like :class:`stalwart.durable.Store` for users' own tests.

It is the real store -- the same operations, the same SQLite dialect of the
database kernel -- on a private file in a temporary directory, with
``durability="off"`` (no fsync), removed when the store is garbage-collected
or the process exits. So it has exactly the semantics of the real backends
(leases and fencing, journal, ledger, checksummed records, quarantine,
retention) and it passes the same contract suite; ``damage()`` lets a test
corrupt one record on purpose. Closing and reopening the same object keeps
its data (like a file store); nothing survives the process.
"""

from __future__ import annotations

import pathlib
import shutil
import sqlite3
import tempfile
import weakref
from typing import Any

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.durable._sqlite import SQLiteStore
from stalwart.observe import EventBus

__all__ = ["MemoryStore"]


class MemoryStore(SQLiteStore):
    """A process-local Store. ``clock`` drives lease expiry and timestamps."""

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        events: EventBus | None = None,
        durability: str = "off",
        timeout: float | None = None,
    ) -> None:
        folder = tempfile.mkdtemp(prefix="stalwart-memory-store-")
        weakref.finalize(self, shutil.rmtree, folder, True)
        super().__init__(
            pathlib.Path(folder) / "store.db",
            durability=durability,
            clock=clock,
            events=events,
            timeout=timeout,
            check_on_open=False,
        )

    @property
    def url(self) -> str:
        return "memory://"

    def raw_sql(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the store's file, beside the store (for damage tests)."""
        # A raw connection on purpose (a test fake, never imported by src/): damage tests
        # must change stored bytes behind the store's back, which the kernel never does.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def damage(self, task_id: str, seq: int, record: bytes | None) -> None:
        """Overwrite the stored record of journal entry ``seq`` (for integrity tests)."""
        self.raw_sql(
            "UPDATE stalwart_journal SET record = ? WHERE task_id = ? AND seq = ?",
            (record, task_id, seq),
        )

    def raw_record(self, task_id: str, seq: int) -> bytes | None:
        """The stored bytes of journal entry ``seq``, or None."""
        rows = self.raw_sql(
            "SELECT record FROM stalwart_journal WHERE task_id = ? AND seq = ?", (task_id, seq)
        )
        return None if not rows or rows[0][0] is None else bytes(rows[0][0])
