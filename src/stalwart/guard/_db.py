"""Where the guard keeps state that must survive restarts: the app's store database.

The spend ledger and the approval queue are small tables (``guard_*``) in the
same database as the durable store -- the SQLite file (``sqlite:///path.db``)
or the PostgreSQL database (``postgresql://...``). They are the ``guard``
component of the database kernel (:mod:`stalwart.db`): their own numbered
migrations, run under the kernel's migration lock, and every operation written
once as a kernel program. The guard imports no store code; on SQLite its
writes join the group commit of the writer thread that the durable store
already runs on the file in this process (no second connection to the file),
and on PostgreSQL its one connection is reopened after a server restart, an
operation that did not commit being retried within its deadline.

Reservations must check and take budget atomically across processes and
nodes: :meth:`GuardDB.run` with ``exclusive=True`` runs its program in a
transaction that serializes them -- the SQLite file's write lock, a
transaction-scoped advisory lock on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stalwart.db import BlockingDatabase, Component, MigrationStatement, Program, Result, blocking
from stalwart.errors import ConfigError

__all__ = ["COMPONENT", "GuardDB", "Rows", "connect", "sqlite_path"]

T = TypeVar("T")

_V1 = (
    """CREATE TABLE IF NOT EXISTS guard_spend (
        scope TEXT NOT NULL, key TEXT NOT NULL, period TEXT NOT NULL,
        spent_usd DOUBLE PRECISION NOT NULL DEFAULT 0, tokens BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (scope, key, period))""",
    """CREATE TABLE IF NOT EXISTS guard_reservations (
        id TEXT PRIMARY KEY, scope TEXT NOT NULL, key TEXT NOT NULL, period TEXT NOT NULL,
        amount_usd DOUBLE PRECISION NOT NULL, created DOUBLE PRECISION NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS guard_reservations_key
        ON guard_reservations (scope, key, period)""",
    """CREATE TABLE IF NOT EXISTS guard_approvals (
        id TEXT PRIMARY KEY, task_id TEXT NOT NULL, agent TEXT NOT NULL, tool TEXT NOT NULL,
        arguments TEXT NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, decided DOUBLE PRECISION, decided_by TEXT)""",
)
_HELD_ADD = (
    "INSERT INTO guard_held (scope, key, period, held_usd) "
    "VALUES (NEW.scope, NEW.key, NEW.period, NEW.amount_usd) "
    "ON CONFLICT (scope, key, period) DO UPDATE SET "
    "held_usd = guard_held.held_usd + excluded.held_usd;"
)
_HELD_TAKE = (
    "UPDATE guard_held SET held_usd = held_usd - OLD.amount_usd "
    "WHERE scope = OLD.scope AND key = OLD.key AND period = OLD.period;"
)
_V2: tuple[MigrationStatement, ...] = (
    # What live reservations hold of each agent's and day's counter, kept by the
    # database as reservation rows come and go (the triggers below;
    # stalwart.guard._budget): a reservation's check summed every live reservation of
    # its counters, and a node with 1,000 calls in flight holds 1,000 of the agent's and
    # as many of the day's. (A task's counter is still summed from its rows: a task has
    # a call or two in flight, and a kept row per task would be one more row written
    # per task.) Triggers, not statements of the ledger's: no statement more per
    # reservation or settle (a round trip each on PostgreSQL), and no writer of the
    # rows -- a node of the release before, during a rolling upgrade, included -- can
    # leave a counter behind.
    # A stale reservation (older than stale_after when a ledger's reconcile saw it) has
    # its ``created`` negated: it keeps its time and stops holding room (the reconcile
    # then counts every counter again), and a late settle still adds its cost. Not a
    # new column: a node of the release before inserts rows without naming columns.
    """CREATE TABLE IF NOT EXISTS guard_held (
        scope TEXT NOT NULL, key TEXT NOT NULL, period TEXT NOT NULL,
        held_usd DOUBLE PRECISION NOT NULL, PRIMARY KEY (scope, key, period)){without_rowid}""",
    """INSERT INTO guard_held (scope, key, period, held_usd)
        SELECT scope, key, period, SUM(amount_usd) FROM guard_reservations
        WHERE created > 0 AND scope <> 'task' GROUP BY scope, key, period""",
    {
        "sqlite": "CREATE TRIGGER guard_held_add AFTER INSERT ON guard_reservations "
        f"WHEN NEW.created > 0 AND NEW.scope <> 'task' BEGIN {_HELD_ADD} END",
    },
    {
        "sqlite": "CREATE TRIGGER guard_held_end AFTER DELETE ON guard_reservations "
        f"WHEN OLD.created > 0 AND OLD.scope <> 'task' BEGIN {_HELD_TAKE} END",
    },
    {
        "postgres": "CREATE FUNCTION guard_held_keep() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN "
        f"IF TG_OP = 'DELETE' AND OLD.created > 0 AND OLD.scope <> 'task' THEN {_HELD_TAKE} "
        "END IF; "
        f"IF TG_OP = 'INSERT' AND NEW.created > 0 AND NEW.scope <> 'task' THEN {_HELD_ADD} "
        "END IF; "
        "RETURN NULL; END $$",
    },
    {
        "postgres": "CREATE TRIGGER guard_held_keep "
        "AFTER INSERT OR DELETE ON guard_reservations "
        "FOR EACH ROW EXECUTE FUNCTION guard_held_keep()",
    },
)
COMPONENT = Component(
    "guard",
    (_V1, _V2),
    create_hint="start the node once (`stalwart run`) against this database",
)
"""The guard's tables (``IF NOT EXISTS``: databases from before the kernel adopt them)."""

_ADVISORY_KEY = 0x5354_4C57_4755_4152 & 0x7FFF_FFFF_FFFF_FFFF  # "STLWGUAR", a bigint


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///path`` URL (or a plain path)."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]  # as the durable store reads it
    if "://" in url:
        raise ConfigError(f"unsupported guard database URL {url!r}")
    return url


class Rows:
    """What :meth:`GuardDB.execute` returns: ``fetchone``, ``fetchall``, ``rowcount``."""

    def __init__(self, result: Result) -> None:
        self._rows = result.rows
        self.rowcount = result.rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)


def _one(sql: str, params: Sequence[Any]) -> Program[Result]:
    return (yield (sql, params))


class GuardDB:
    """The guard tables in one database, through the database kernel (``?`` parameters).

    Connects, and creates or migrates the tables, on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        full = url if "://" in url else f"sqlite:///{sqlite_path(url)}"
        if full.startswith("sqlite://") and not full.startswith("sqlite:///"):
            raise ConfigError(f"unsupported guard database URL {url!r}")
        self._db: BlockingDatabase = blocking(full, setting="the guard's database URL")
        self.postgres = self._db.dialect == "postgres"
        self._migrated = False
        self._lock = threading.Lock()

    @property
    def lock(self) -> int:
        """The advisory lock id (PostgreSQL) of the guard's exclusive transactions: a
        program of the guard run in another component's transaction on this database
        (:class:`stalwart.durable.Joined`) must hold it there too."""
        return _ADVISORY_KEY

    def _ready(self) -> BlockingDatabase:
        if not self._migrated:
            with self._lock:
                if not self._migrated:
                    self._db.migrate(COMPONENT)
                    self._migrated = True
        return self._db

    def run(
        self, fn: Callable[..., Program[T]], *args: Any, exclusive: bool = False, lazy: bool = False
    ) -> T:
        """Run a program in one transaction; ``exclusive`` serializes it with every other
        exclusive one of the guard, across processes and nodes; ``lazy``: its commit need
        not reach the disk before this returns (the next ordinary commit on the database
        takes it there: :meth:`stalwart.db.BlockingDatabase.run`)."""
        lock = _ADVISORY_KEY if exclusive else None
        return self._ready().run(fn, *args, lock=lock, lazy=lazy)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement in its own transaction."""
        return Rows(self.run(_one, sql, tuple(params)))

    def close(self) -> None:
        self._db.close()


def connect(url: str) -> GuardDB:
    """The guard tables in the database of ``url`` (created on first use)."""
    return GuardDB(url)
