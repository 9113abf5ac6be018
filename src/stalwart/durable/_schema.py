"""The durable store's tables, as a database-kernel migrations component.

Step ``n`` of :data:`COMPONENT` takes the store's tables from version ``n`` to
``n + 1``; opening a store applies the missing ones under the kernel's
migration lock (see :mod:`stalwart.db._migrate`), and its version stays under
the key ``schema_version`` of ``stalwart_meta``, where it always was. A store
written by a *newer* stalwart is refused (never "migrated down").
"""

from __future__ import annotations

from typing import Literal

from stalwart.db import Component, render

__all__ = ["COMPONENT", "SCHEMA_VERSION", "migrations"]

Dialect = Literal["sqlite", "postgres"]

_V1 = [
    """CREATE TABLE IF NOT EXISTS stalwart_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS stalwart_tasks (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        status TEXT NOT NULL,
        input {blob},
        seed {bigint} NOT NULL,
        attempts {bigint} NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_token {bigint} NOT NULL DEFAULT 0,
        lease_expires {float},
        outcome {blob},
        created_at {float} NOT NULL,
        updated_at {float} NOT NULL,
        finished_at {float})""",
    "CREATE INDEX IF NOT EXISTS stalwart_tasks_runnable ON stalwart_tasks (status, created_at)",
    "CREATE INDEX IF NOT EXISTS stalwart_tasks_finished ON stalwart_tasks (finished_at)",
    """CREATE TABLE IF NOT EXISTS stalwart_journal (
        task_id TEXT NOT NULL,
        seq {bigint} NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        record {blob},
        PRIMARY KEY (task_id, seq)){without_rowid}""",
    """CREATE TABLE IF NOT EXISTS stalwart_effects (
        key TEXT PRIMARY KEY,
        task_id TEXT NOT NULL,
        seq {bigint} NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        record {blob},
        updated_at {float} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS stalwart_effects_task ON stalwart_effects (task_id)",
    """CREATE TABLE IF NOT EXISTS stalwart_quarantine (
        id {serial} PRIMARY KEY{autoincrement},
        task_id TEXT NOT NULL,
        seq {bigint} NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        record {blob},
        at {float} NOT NULL)""",
]

# v2: the cluster's node registry, and an index for agents claiming their own tasks.
_V2 = [
    """CREATE TABLE IF NOT EXISTS stalwart_nodes (
        id TEXT PRIMARY KEY,
        info {blob},
        started_at {float} NOT NULL,
        heartbeat_at {float} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS stalwart_tasks_agent ON stalwart_tasks (agent, status, created_at)",
]

# v3: the highest record format a task's journal may hold. A runner claiming a task
# raises it to its own FORMAT_VERSION; a runner never claims a task above its own, so
# during a rolling upgrade an old node leaves alone what a new node has touched.
_V3 = ["ALTER TABLE stalwart_tasks ADD COLUMN needs_format {bigint} NOT NULL DEFAULT 1"]

# v4: the W3C ``traceparent`` of the span that created the task ('' without tracing), so
# whichever runner claims it (first run, hand-over, resume after a kill) continues the
# caller's trace without depending on a message racing the claim.
_V4 = ["ALTER TABLE stalwart_tasks ADD COLUMN trace TEXT NOT NULL DEFAULT ''"]

COMPONENT = Component(
    "durable",
    (tuple(_V1), tuple(_V2), tuple(_V3), tuple(_V4)),
    meta_key="schema_version",
    create_hint="start the node once (`stalwart run`) against this store to create it",
)
SCHEMA_VERSION = COMPONENT.version


def migrations(dialect: Dialect) -> list[list[str]]:
    """The migration steps rendered for ``dialect``; index n goes from version n to n+1."""
    return render(COMPONENT, dialect)
