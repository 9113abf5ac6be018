"""The SQLite store: the embedded default. WAL mode, configurable durability, group commit.

The operations are :class:`~stalwart.durable._store.SQLStore`'s; the connection,
its writer thread and group commit are the database kernel's
(:class:`stalwart.db.SQLiteDatabase`). Durability levels (``PRAGMA synchronous``
in WAL mode):

- ``full`` (default): every commit is fsynced; a committed step survives a
  process kill *and* a power loss or OS crash.
- ``normal``: commits reach the OS but the WAL is fsynced only at checkpoints; a
  committed step survives a process kill (SIGKILL, OOM), a power loss may lose
  the last commits (never corrupts the file).
- ``off``: no fsync at all; for tests and throwaway runs.
"""

from __future__ import annotations

import os
import pathlib

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.db import SQLiteDatabase
from stalwart.durable._store import SQLStore
from stalwart.observe import EventBus

__all__ = ["SQLiteStore"]


class SQLiteStore(SQLStore):
    """A :class:`~stalwart.durable.Store` in one SQLite file.

    ``durability`` is "full" (default), "normal" or "off" (see the module doc).
    ``timeout`` bounds every operation (default: the ``store`` timeout, 10 s).
    ``check_on_open`` runs ``PRAGMA quick_check`` at open; a file that fails it, or
    is not a database at all, is never replaced: ``open()`` raises CorruptRecord
    naming the file and the recovery commands (``stalwart store check`` /
    ``stalwart store recover``). ``migrate=False`` (read-only commands) opens the
    file read-only and never creates or migrates anything.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "full",
        clock: Clock = SYSTEM_CLOCK,
        timeout: float | None = None,
        events: EventBus | None = None,
        check_on_open: bool = True,
        max_batch: int = 512,
        wal_autocheckpoint: int = 200,
        migrate: bool = True,
    ) -> None:
        self._path = pathlib.Path(path)
        db = SQLiteDatabase(
            self._path,
            durability=durability,
            timeout=timeout,
            max_batch=max_batch,
            wal_autocheckpoint=wal_autocheckpoint,
            check_on_open=check_on_open,
            readonly=not migrate,
        )
        super().__init__(db, clock=clock, events=events, migrate=migrate)
        self.sqlite = db

    @property
    def path(self) -> pathlib.Path:
        return self._path

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
