"""Numbered migrations, per component.

Every package that stores keeps its own tables and registers them as a
:class:`Component`: a name and a list of steps, step ``n`` taking the
component's tables from version ``n`` to ``n + 1``. The version of each
component lives in the table ``stalwart_meta`` (key ``schema_version:<name>``;
the durable store keeps the key ``schema_version`` it always had).

Migrating runs under a lock that one migrator at a time holds — a
transaction-scoped advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` (the
file's write lock) on SQLite — so nodes starting together on a fresh database
never race. A database written by a *newer* release is refused, never migrated
down: older code could misread records it does not understand. Read-only opens
never migrate: :func:`require_program` only checks.

Statements may use ``{blob}``, ``{float}``, ``{bigint}``, ``{serial}``,
``{autoincrement}`` and ``{without_rowid}``, rendered per dialect. Where the
dialects differ beyond types (a trigger: SQL in SQLite, a PL/pgSQL function in
PostgreSQL), a statement is a mapping of dialect to its text; a dialect it does
not name runs nothing for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from stalwart.db._program import Program
from stalwart.errors import SchemaMissing, StoreError

__all__ = [
    "MIGRATION_LOCK",
    "Component",
    "MigrationStatement",
    "migrate_program",
    "render",
    "require_program",
]

Dialect = Literal["sqlite", "postgres"]
MigrationStatement = str | Mapping[Dialect, str]
"""One statement of a migration step: for both dialects, or each dialect's own."""
MIGRATION_LOCK = 0x5354414C  # advisory lock id: one migrator at a time across nodes

_TYPES = {
    "sqlite": {
        "blob": "BLOB",
        "float": "REAL",
        "bigint": "INTEGER",
        "serial": "INTEGER",
        "autoincrement": " AUTOINCREMENT",
        "without_rowid": " WITHOUT ROWID",
    },
    "postgres": {
        "blob": "BYTEA",
        "float": "DOUBLE PRECISION",
        "bigint": "BIGINT",
        "serial": "BIGSERIAL",
        "autoincrement": "",
        "without_rowid": "",
    },
}
_META = "CREATE TABLE IF NOT EXISTS stalwart_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_GET = "SELECT value FROM stalwart_meta WHERE key = ?"
_SET = (
    "INSERT INTO stalwart_meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_HAS_META = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stalwart_meta'",
    "postgres": "SELECT 1 WHERE to_regclass('stalwart_meta') IS NOT NULL",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Component:
    """One package's tables: ``steps[n]`` takes them from version n to n + 1.

    ``create_hint`` is the command an operator runs to create them (named by
    the error a read-only open raises on a database without them).
    """

    name: str
    steps: tuple[tuple[MigrationStatement, ...], ...]
    meta_key: str = ""
    create_hint: str = "start the node once (`stalwart run`) against this database"

    @property
    def version(self) -> int:
        return len(self.steps)

    @property
    def key(self) -> str:
        return self.meta_key or f"schema_version:{self.name}"


def render(component: Component, dialect: Dialect) -> list[list[str]]:
    """The component's steps rendered for ``dialect``."""
    fmt = _TYPES[dialect]
    return [
        [
            stmt.format(**fmt)
            for stmt in (s if isinstance(s, str) else s.get(dialect, "") for s in step)
            if stmt
        ]
        for step in component.steps
    ]


def _version(dialect: Dialect, component: Component) -> Program[int]:
    has = yield (_HAS_META[dialect], ())
    if not has.rows:
        return 0
    row = (yield (_GET, (component.key,))).one()
    return 0 if row is None else int(row[0])


def _newer(component: Component, url: str, version: int) -> StoreError:
    return StoreError(
        f"database {url} has {component.name} schema version {version}, newer than this "
        f"stalwart supports ({component.version}); upgrade stalwart"
    )


def migrate_program(dialect: Dialect, component: Component, url: str) -> Program[int]:
    """Bring ``component`` to its latest version; returns the version it was at.

    Runs inside the caller's transaction, which holds the migration lock."""
    version = yield from _version(dialect, component)
    if version > component.version:
        raise _newer(component, url, version)
    if version < component.version:
        yield (_META, ())
        for step in render(component, dialect)[version:]:
            for stmt in step:
                yield (stmt, ())
        yield (_SET, (component.key, str(component.version)))
    return version


def require_program(dialect: Dialect, component: Component, url: str) -> Program[int]:
    """Check, without changing anything, that ``component`` is at its latest version."""
    version = yield from _version(dialect, component)
    if version > component.version:
        raise _newer(component, url, version)
    if version < component.version:
        state = "has no" if version == 0 else f"has an old (v{version})"
        raise SchemaMissing(
            f"database {url} {state} {component.name} schema (this stalwart needs "
            f"v{component.version}); this command only reads and never creates or migrates "
            f"it: {component.create_hint}, or check the URL"
        )
    return version
