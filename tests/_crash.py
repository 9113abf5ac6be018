"""The files of a SQLite database as an OS crash would leave them: for tests of what is
durable when (``docs/durable.md``, *What ``full`` guarantees*)."""

from __future__ import annotations

import pathlib
import shutil

__all__ = ["crash_image"]


def crash_image(path: pathlib.Path, wal_bytes: int, into: pathlib.Path) -> pathlib.Path:
    """The database as an OS crash leaves it when the WAL is on disk up to ``wal_bytes``
    (the rest was never fsynced): the main file as it is (nothing may have been
    checkpointed into it since: open the store with a large ``wal_autocheckpoint``), the
    WAL cut there; SQLite rebuilds the rest on open. Returns the copy's path."""
    into.mkdir()
    shutil.copyfile(path, into / path.name)
    with open(f"{path}-wal", "rb") as wal, open(into / f"{path.name}-wal", "wb") as cut:
        cut.write(wal.read(wal_bytes))
    return into / path.name
