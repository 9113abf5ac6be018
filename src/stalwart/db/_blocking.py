"""The kernel for components that run in threads, not on an event loop (the guard).

:func:`blocking` gives a :class:`BlockingDatabase` for a URL. Programs run as on
the async kernel -- written once, both dialects -- but the caller's thread waits:

- SQLite: the program joins the group commit of the writer thread already open
  on the file in this process (the durable store's), or of its own writer if
  there is none yet. One connection per file per process.
- PostgreSQL: one connection, opened on first use and opened again after it
  broke (a server restart, a killed backend); an operation that failed before
  its COMMIT was sent is retried with backoff within its deadline.

``lock`` (PostgreSQL) takes a transaction-scoped advisory lock first: the
operations that hold the same lock id run one at a time across processes and
nodes. On SQLite every transaction already holds the file's write lock.

``readonly`` handles (for commands that only read) never create or migrate
anything: SQLite opens the file ``mode=ro`` (a missing file is SchemaMissing),
PostgreSQL sessions are ``default_transaction_read_only``, and :meth:`migrate`
only checks, as :meth:`require` does.
"""

from __future__ import annotations

import contextlib
import pathlib
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

from stalwart.config import Timeouts
from stalwart.db import _metrics
from stalwart.db._base import backoff
from stalwart.db._migrate import MIGRATION_LOCK, Component, migrate_program, require_program
from stalwart.db._program import Program, drive_sync
from stalwart.db._sqlite import SQLiteDatabase
from stalwart.db._url import parse_url, redact
from stalwart.errors import CommitUnknown, StoreError, StoreUnavailable

__all__ = ["BlockingDatabase", "BlockingPostgres", "BlockingSQLite", "blocking"]

T = TypeVar("T")


class BlockingDatabase(Protocol):
    """A database for blocking callers; see the module doc."""

    @property
    def url(self) -> str: ...

    @property
    def dialect(self) -> Literal["sqlite", "postgres"]: ...

    def run(
        self,
        fn: Callable[..., Program[T]],
        *args: Any,
        lock: int | None = None,
        lazy: bool = False,
    ) -> T:
        """Run ``fn(*args)`` in one transaction (committed when this returns).

        ``lazy``: the commit need not be on disk when this returns -- written where a
        process kill cannot lose it, made durable by the next ordinary commit on the
        same database (SQLite: no fsync of its own; PostgreSQL: ``synchronous_commit =
        off`` for the transaction). Only for data rebuilt when lost."""
        ...

    def migrate(self, component: Component) -> int:
        """Bring ``component`` to its latest version under the migration lock (on a
        read-only handle: only check it, as :meth:`require`)."""
        ...

    def require(self, component: Component) -> int:
        """Check that ``component`` is at its latest version; never changes anything.
        Raises SchemaMissing (naming the URL and how to create it) otherwise."""
        ...

    def close(self) -> None: ...


class BlockingSQLite:
    """A SQLite file, through the process's writer thread for it."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        timeout: float | None = None,
        readonly: bool = False,
        durability: str = "full",
        check_on_open: bool = True,
    ) -> None:
        # join_any: a writer already open on the file in this process is joined, whatever
        # its settings (a read-only handle opens its own read-only connection).
        self._db = SQLiteDatabase(
            pathlib.Path(path),
            timeout=timeout,
            join_any=True,
            readonly=readonly,
            durability=durability,
            check_on_open=check_on_open,
        )
        self.url = self._db.url
        self._lock = threading.Lock()
        self._open = False

    def _ensure(self) -> SQLiteDatabase:
        with self._lock:
            if not self._open:
                self._db.open_blocking()
                self._open = True
        return self._db

    def run(
        self,
        fn: Callable[..., Program[T]],
        *args: Any,
        lock: int | None = None,
        lazy: bool = False,
    ) -> T:
        return self._ensure().run_blocking(fn, *args, lazy=lazy)

    def migrate(self, component: Component) -> int:
        return self._ensure().migrate_blocking(component)

    def require(self, component: Component) -> int:
        return self.run(require_program, "sqlite", component, self.url)

    def close(self) -> None:
        with self._lock:
            if self._open:
                self._open = False
                self._db.close_blocking()


class BlockingPostgres:
    """A PostgreSQL database through one blocking psycopg connection, reopened as needed."""

    dialect: Literal["postgres"] = "postgres"

    def __init__(self, url: str, *, timeout: float | None = None, readonly: bool = False) -> None:
        self._target = url
        self.url = redact(url)
        self.timeout = Timeouts(store=timeout).store if timeout is not None else Timeouts().store
        self.readonly = readonly
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connection(self, deadline: float) -> Any:
        import psycopg

        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        remaining = max(1, int(deadline - time.monotonic()))
        conn = psycopg.connect(self._target, connect_timeout=remaining)
        conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")
        conn.execute("SET idle_in_transaction_session_timeout = 60000")
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")
        conn.commit()
        self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def run(
        self,
        fn: Callable[..., Program[T]],
        *args: Any,
        lock: int | None = None,
        lazy: bool = False,
    ) -> T:
        import psycopg

        from stalwart.db._postgres import map_pg_error

        transient = (psycopg.OperationalError, psycopg.InterfaceError)
        deadline = time.monotonic() + self.timeout
        tries = 0
        with self._lock:
            while True:
                committing = False
                try:
                    conn = self._connection(deadline)
                    try:
                        if lazy:  # the server's next synchronous commit flushes it
                            conn.execute("SET LOCAL synchronous_commit = off")
                        if lock is not None:
                            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                        value: T = drive_sync(conn, fn, args, postgres=True)
                        committing = True
                        conn.commit()
                        return value
                    except BaseException:
                        if not committing:
                            with contextlib.suppress(psycopg.Error):
                                conn.rollback()
                        raise
                except transient as exc:
                    self._drop()  # never keep a connection that failed: open another
                    err = map_pg_error(exc, self.url)
                    if committing:
                        raise CommitUnknown(
                            f"{err} (during commit: the outcome is unknown)"
                        ) from exc
                    tries += 1
                    delay = backoff(tries)
                    if time.monotonic() + delay >= deadline:
                        raise StoreUnavailable(
                            f"{err} (gave up after {tries} attempts in {self.timeout:g} s)"
                        ) from exc
                    _metrics.RETRIES.labels(dialect="postgres").inc()
                    time.sleep(delay)  # no-deadline: a worker thread's bounded backoff
                except psycopg.Error as exc:
                    raise map_pg_error(exc, self.url) from exc

    def migrate(self, component: Component) -> int:
        if self.readonly:
            return self.require(component)
        return self.run(migrate_program, "postgres", component, self.url, lock=MIGRATION_LOCK)

    def require(self, component: Component) -> int:
        return self.run(require_program, "postgres", component, self.url)

    def close(self) -> None:
        with self._lock:
            self._drop()


def blocking(
    url: str,
    *,
    setting: str = "durable.store_url",
    timeout: float | None = None,
    readonly: bool = False,
    durability: str = "full",
    check_on_open: bool = True,
) -> BlockingDatabase:
    """The blocking kernel handle for ``url`` (connects on first use).

    ``durability`` and ``check_on_open`` are the SQLite writer's (see
    :class:`SQLiteDatabase`; ignored when the file's writer is already open)."""
    parsed = parse_url(url, setting=setting)
    if parsed.dialect == "sqlite":
        return BlockingSQLite(
            parsed.target,
            timeout=timeout,
            readonly=readonly,
            durability=durability,
            check_on_open=check_on_open,
        )
    if parsed.dialect == "postgres":
        return BlockingPostgres(parsed.target, timeout=timeout, readonly=readonly)
    raise StoreError(f"no blocking driver for {parsed.display}")  # pragma: no cover
