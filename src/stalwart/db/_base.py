"""The database kernel's one interface; the dialects implement only connections.

A :class:`Database` runs *programs* (see :mod:`stalwart.db._program`):

- :meth:`Database.write` queues one into the next group commit: the programs
  of every concurrent caller run in one transaction and share one commit; the
  call returns once the commit is durable.
- :meth:`Database.read` runs one without a commit of its own.
- :meth:`Database.migrate` brings a :class:`Component` to its latest version
  under the migration lock; :meth:`Database.require` checks it read-only.

Every call has a deadline (``timeout``, default the ``store`` timeout, 10 s):
transient failures (a connection lost with a server restart, a lock wait) are
retried with backoff within it, then raise :class:`StoreUnavailable`.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from stalwart.db._migrate import Component
from stalwart.db._program import Program

__all__ = ["AdvisoryLock", "Database", "backoff", "lock_order"]

T = TypeVar("T")

AdvisoryLock = int | str
"""A PostgreSQL advisory lock: its id, or a name whose id is ``hashtext(name)``."""


def lock_order(lock: AdvisoryLock) -> tuple[bool, int | str]:
    """The one order every batch takes its locks in: ids ascending, then names."""
    return (isinstance(lock, str), lock)


def backoff(attempt: int, *, base: float = 0.02, cap: float = 1.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


class Database(abc.ABC):
    """One database (one URL) as this process uses it: connections, commits, migrations."""

    dialect: Literal["sqlite", "postgres"]
    url: str
    """Where it lives, without credentials."""
    timeout: float
    """The default deadline of every operation, in seconds."""
    readonly: bool
    durability: str
    """"full", "normal" or "off" (see the dialect)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (and on SQLite run the integrity check). Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Commit what is queued, then release connections and threads."""

    @abc.abstractmethod
    async def write(
        self,
        fn: Callable[..., Program[T]],
        *args: Any,
        timeout: float | None = None,
        lazy: bool = False,
        lock: AdvisoryLock | None = None,
    ) -> T:
        """Run ``fn(*args)`` in the next group commit; returns its value once committed.

        ``lock`` (PostgreSQL): a transaction-scoped advisory lock held for the commit that
        takes the program, the same lock id :meth:`BlockingDatabase.run` takes -- so the
        program runs one at a time with every other transaction holding it, across
        processes and nodes. A name (``str``) is the lock ``hashtext(name)``, as SQL that
        takes ``pg_advisory_xact_lock(hashtext(name))`` itself does. A batch takes its
        programs' locks first, in one order (ids ascending, then names), before any
        statement: a transaction waiting for one holds no row lock another holder could
        be waiting for -- which a program taking a lock in its own statements, mid-batch,
        would (PostgreSQL then aborts one of the two after ``deadlock_timeout``). On
        SQLite every transaction holds the file's write lock already.

        ``lazy``: committed (a process kill cannot lose it) but not flushed to disk on
        its own at ``full`` durability -- the next ordinary commit of the database, which
        comes after it in the log, makes it durable with its own (SQLite: one WAL file,
        written in order; PostgreSQL: ``synchronous_commit = off`` for the transaction).
        Only for a write that may be lost to an OS crash as long as nothing durable
        depends on it (``docs/durable.md``, *What ``full`` guarantees*)."""

    @abc.abstractmethod
    async def sync(self, timeout: float | None = None) -> None:
        """Make every commit made so far durable, as the next ordinary commit would, and
        return when it is: what a caller awaits before anything outside may depend on a
        lazy write (SQLite: an fsync of the WAL by the writer thread, which needs no write
        lock and is shared by the requests of one group commit, or answered by its fsync;
        PostgreSQL: a synchronous commit, which flushes the server's WAL up to it).
        Returns at once where commits are not made durable one by one (durability
        ``normal`` or ``off``, an in-memory database). Raises StoreUnavailable when it
        does not finish within ``timeout`` (default: the database's)."""

    def holds(self, url: str) -> bool:
        """Whether ``url`` names this very database (and this one takes writes), so that
        a program written for the database of ``url`` may run in this one's
        transactions. False when unsure: the caller then writes through its own."""
        return False

    @abc.abstractmethod
    async def read(
        self, fn: Callable[..., Program[T]], *args: Any, timeout: float | None = None
    ) -> T:
        """Run ``fn(*args)`` for its rows."""

    @abc.abstractmethod
    async def migrate(self, component: Component) -> int:
        """Bring ``component`` to its latest version (refused on a read-only database);
        returns the version it was at."""

    @abc.abstractmethod
    async def require(self, component: Component) -> int:
        """Check that ``component`` is at its latest version; never changes anything.
        Raises SchemaMissing (naming the URL and how to create it) otherwise."""

    async def probe(self, timeout: float) -> None:
        """A bounded real write (one meta row), for readiness: raises StoreUnavailable
        when the database does not accept writes within ``timeout``."""
        await self.write(_probe_program, timeout=timeout)


def _probe_program() -> Program[None]:
    yield (
        "INSERT INTO stalwart_meta (key, value) VALUES ('write_probe', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = "
        "CAST(CAST(stalwart_meta.value AS INTEGER) % 1000000 + 1 AS TEXT)",
        (),
    )
