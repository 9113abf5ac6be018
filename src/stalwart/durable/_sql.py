"""SQL of the durable store, one spelling for both dialects (``?`` placeholders; the
kernel swaps in ``%s`` on PostgreSQL and turns ``/*pg:TEXT*/`` into TEXT there).

Writes on behalf of a task carry a *fence*: they apply only while the task is
running under the lease token the writer holds. Writes are shaped so they never
raise in normal operation (``ON CONFLICT DO NOTHING`` plus a row count check):
one failing statement would abort a PostgreSQL transaction, and with it every
other task's writes in the same group commit.
"""

from __future__ import annotations

import re
from typing import Any

from stalwart.durable._base import TASK_COLUMNS
from stalwart.durable._integrity import FORMAT_VERSION as _format_version

__all__ = ["acquire_query", "list_query", "pg"]

_PG_ONLY = re.compile(r"/\*pg:(.*?)\*/")

# The fence locks the task row it reads (FOR SHARE on PostgreSQL; SQLite has one
# writer at a time anyway). Without the lock, a write whose fence passed just before a
# takeover could commit after it -- e.g. a writer cut off mid-transaction whose COMMIT
# arrives late -- and land in the new owner's journal. With it, a takeover waits for
# (or, via SKIP LOCKED, skips) a task whose fenced write is still open, and a silent
# writer's transaction is ended by idle_in_transaction_session_timeout.
FENCE = (
    "EXISTS (SELECT 1 FROM stalwart_tasks WHERE id = ? AND lease_owner = ? "
    "AND lease_token = ? AND status = 'running' /*pg:FOR SHARE*/)"
)

INSERT_TASK = (
    f"INSERT INTO stalwart_tasks ({TASK_COLUMNS}) "
    "VALUES (?, ?, 'pending', ?, ?, 0, NULL, 0, NULL, NULL, ?, ?, NULL, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
SELECT_TASK = f"SELECT {TASK_COLUMNS} FROM stalwart_tasks WHERE id = ?"
# Several tasks by id in one statement: ``{ids}`` is ``?`` joined by commas, at most
# SELECT_TASKS_CHUNK of them (an indexed IN on the primary key on both dialects).
SELECT_TASKS = f"SELECT {TASK_COLUMNS} FROM stalwart_tasks WHERE id IN ({{ids}})"
SELECT_TASKS_CHUNK = 200
LIST_TASKS = f"SELECT {TASK_COLUMNS} FROM stalwart_tasks ORDER BY created_at, id LIMIT ?"
LIST_TASKS_BY_STATUS = (
    f"SELECT {TASK_COLUMNS} FROM stalwart_tasks WHERE status = ? ORDER BY created_at, id LIMIT ?"
)
LIST_TASKS_BY_AGENT = (
    f"SELECT {TASK_COLUMNS} FROM stalwart_tasks WHERE agent = ? ORDER BY created_at, id LIMIT ?"
)
LIST_TASKS_BY_AGENT_STATUS = (
    f"SELECT {TASK_COLUMNS} FROM stalwart_tasks WHERE agent = ? AND status = ? "
    "ORDER BY created_at, id LIMIT ?"
)

# Runnable: pending, or running with an expired lease (its runner died or stalled), and
# not touched by a newer stalwart (whose journal records this one could not read).
_fmt = str(_format_version)
_RUNNABLE = (
    "(status = 'pending' OR (status = 'running' AND lease_expires < ?)) AND needs_format <= " + _fmt
)
_CLAIM = (
    "UPDATE stalwart_tasks SET status = 'running', lease_owner = ?, "
    "lease_token = lease_token + 1, lease_expires = ?, attempts = attempts + 1, updated_at = ?, "
    "needs_format = CASE WHEN needs_format < " + _fmt + " THEN " + _fmt + " ELSE needs_format END "
)
ACQUIRE_NEXT = (
    _CLAIM + "WHERE id = (SELECT id FROM stalwart_tasks WHERE " + _RUNNABLE + " "
    "ORDER BY created_at, id LIMIT 1 /*pg:FOR UPDATE SKIP LOCKED*/) RETURNING " + TASK_COLUMNS
)
ACQUIRE_NEXT_FOR_AGENT = (
    _CLAIM + "WHERE id = (SELECT id FROM stalwart_tasks WHERE agent = ? AND " + _RUNNABLE + " "
    "ORDER BY created_at, id LIMIT 1 /*pg:FOR UPDATE SKIP LOCKED*/) RETURNING " + TASK_COLUMNS
)
# The same claim, taken only while fewer than N of the agent's tasks hold a live lease:
# a cluster-wide concurrency limit. On PostgreSQL the caller first takes a per-agent
# transaction advisory lock, so two nodes cannot both count N-1 and both claim.
ACQUIRE_NEXT_FOR_AGENT_LIMITED = (
    _CLAIM + "WHERE id = (SELECT id FROM stalwart_tasks WHERE agent = ? AND " + _RUNNABLE + " "
    "AND (SELECT count(*) FROM stalwart_tasks WHERE agent = ? AND status = 'running' "
    "AND lease_expires >= ?) < ? "
    "ORDER BY created_at, id LIMIT 1 /*pg:FOR UPDATE SKIP LOCKED*/) RETURNING " + TASK_COLUMNS
)
# Many claims in one transaction (an agent process filling its free capacity): up to
# ``LIMIT ?`` of the agent's oldest runnable tasks, each taken as ACQUIRE_NEXT_FOR_AGENT
# takes one. The picked rows are a CTE (materialized on PostgreSQL, its rows locked FOR
# UPDATE SKIP LOCKED, so concurrent claimers on other nodes take disjoint sets).
ACQUIRE_MANY_FOR_AGENT = (
    "WITH picked AS (SELECT id FROM stalwart_tasks WHERE agent = ? AND " + _RUNNABLE + " "
    "ORDER BY created_at, id LIMIT ? /*pg:FOR UPDATE SKIP LOCKED*/) "
    + _CLAIM
    + "WHERE id IN (SELECT id FROM picked) RETURNING "
    + TASK_COLUMNS
)
# The agent's tasks holding a live lease (every node): what ``max_running`` counts.
COUNT_LIVE_LEASES = (
    "SELECT count(*) FROM stalwart_tasks WHERE agent = ? AND status = 'running' "
    "AND lease_expires >= ?"
)
ACQUIRE_ONE = _CLAIM + "WHERE id = ? AND " + _RUNNABLE + " RETURNING " + TASK_COLUMNS
ACQUIRE_FORCE = (
    _CLAIM
    + "WHERE id = ? AND status IN ('pending', 'running') AND needs_format <= "
    + _fmt
    + " RETURNING "
    + TASK_COLUMNS
)
HEARTBEAT = (
    "UPDATE stalwart_tasks SET lease_expires = ?, updated_at = ? "
    "WHERE id = ? AND lease_owner = ? AND lease_token = ? AND status = 'running'"
)
# One owner's leases renewed in one statement, each still fenced by its own token.
# ``{fences}`` is ``(id = ? AND lease_token = ?)`` joined by OR, at most
# HEARTBEAT_MANY_CHUNK of them (an indexed OR on the primary key on both dialects).
HEARTBEAT_MANY = (
    "UPDATE stalwart_tasks SET lease_expires = ?, updated_at = ? "
    "WHERE lease_owner = ? AND status = 'running' AND ({fences}) RETURNING id"
)
HEARTBEAT_MANY_CHUNK = 200
RELEASE = (
    "UPDATE stalwart_tasks SET status = 'pending', lease_owner = NULL, lease_expires = NULL, "
    "updated_at = ? WHERE id = ? AND lease_owner = ? AND lease_token = ? AND status = 'running'"
)
FINISH = (
    "UPDATE stalwart_tasks SET status = ?, outcome = ?, lease_owner = NULL, "
    "lease_expires = NULL, updated_at = ?, finished_at = ? "
    "WHERE id = ? AND lease_owner = ? AND lease_token = ? AND status = 'running'"
)
COUNT_PENDING = "SELECT count(*) FROM stalwart_tasks WHERE status = 'pending'"
COUNT_PENDING_AGENT = COUNT_PENDING + " AND agent = ?"
# Retry (a failed or quarantined task runs again): the row back to pending, and a step
# failure recorded last dropped from the journal (it would replay the same failure).
RETRY_TASK = (
    "UPDATE stalwart_tasks SET status = 'pending', attempts = 0, outcome = NULL, "
    "lease_owner = NULL, lease_expires = NULL, finished_at = NULL, updated_at = ? "
    "WHERE id = ? AND status IN ('failed', 'quarantined')"
)
RETRY_DROP_FAILED = (
    "DELETE FROM stalwart_journal WHERE task_id = ? AND kind = 'failed' AND seq = "
    "(SELECT max(seq) FROM stalwart_journal WHERE task_id = ?)"
)
# Cancel: a pending, running or suspended task ends "cancelled" at once, its lease
# expiry dropped and its fencing token bumped, so a runner still holding it is fenced
# out: its next write (journal, ledger, heartbeat, finish) is refused with LeaseLost,
# and no claim ever takes a cancelled task. The status is the flag every node reads;
# lease_owner keeps the last owner, so the node whose process ran it can interrupt it.
CANCEL = (
    "UPDATE stalwart_tasks SET status = 'cancelled', outcome = ?, "
    "lease_expires = NULL, lease_token = lease_token + 1, updated_at = ?, finished_at = ? "
    "WHERE id = ? AND status IN ('pending', 'running', 'awaiting_approval')"
)
# Durable approvals: the runner parks its task (no lease, nobody busy) until a person
# decides; waking makes it pending again, and any node's agent claims and replays it.
SUSPEND = (
    "UPDATE stalwart_tasks SET status = 'awaiting_approval', outcome = ?, lease_owner = NULL, "
    "lease_expires = NULL, updated_at = ? "
    "WHERE id = ? AND lease_owner = ? AND lease_token = ? AND status = 'running'"
)
WAKE = (
    "UPDATE stalwart_tasks SET status = 'pending', outcome = NULL, updated_at = ? "
    "WHERE id = ? AND status = 'awaiting_approval'"
)
APPEND = (
    "INSERT INTO stalwart_journal (task_id, seq, kind, name, record) "
    "SELECT ?, ?, ?, ?, ? WHERE " + FENCE + " ON CONFLICT (task_id, seq) DO NOTHING"
)
LOAD_JOURNAL = "SELECT seq, kind, name, record FROM stalwart_journal WHERE task_id = ? ORDER BY seq"
DELETE_ENTRY = "DELETE FROM stalwart_journal WHERE task_id = ? AND seq = ?"
QUARANTINE = (
    "INSERT INTO stalwart_quarantine (task_id, seq, kind, reason, record, at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
LIST_QUARANTINE = "SELECT id, task_id, seq, kind, reason, record, at FROM stalwart_quarantine"
EFFECT_COLUMNS = "key, task_id, seq, name, status, record, updated_at"
LOAD_EFFECTS = f"SELECT {EFFECT_COLUMNS} FROM stalwart_effects WHERE task_id = ?"
EFFECT_START = (
    f"INSERT INTO stalwart_effects ({EFFECT_COLUMNS}) "
    "SELECT ?, ?, ?, ?, 'started', NULL, ? WHERE " + FENCE + " ON CONFLICT (key) DO NOTHING"
)
EFFECT_FINISH = (
    "UPDATE stalwart_effects SET status = ?, record = ?, updated_at = ? WHERE key = ? AND " + FENCE
)
DELETE_EFFECT = "DELETE FROM stalwart_effects WHERE key = ?"
# Retention. "compact" keeps the task row (its result) and drops what only replay needed.
PURGE_SELECT = (
    "SELECT id FROM stalwart_tasks WHERE status IN ('succeeded', 'failed', 'cancelled') "
    "AND finished_at < ? ORDER BY finished_at LIMIT ?"
)
PURGE_JOURNAL = "DELETE FROM stalwart_journal WHERE task_id = ?"
PURGE_EFFECTS = "DELETE FROM stalwart_effects WHERE task_id = ?"
PURGE_TASK = "DELETE FROM stalwart_tasks WHERE id = ?"
HAS_JOURNAL = "SELECT 1 FROM stalwart_journal WHERE task_id = ? LIMIT 1"
GET_META = "SELECT value FROM stalwart_meta WHERE key = 'schema_version'"
SET_META = (
    "INSERT INTO stalwart_meta (key, value) VALUES ('schema_version', ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


UPSERT_NODE = (
    "INSERT INTO stalwart_nodes (id, info, started_at, heartbeat_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET info = excluded.info, started_at = excluded.started_at, "
    "heartbeat_at = excluded.heartbeat_at"
)
NODE_HEARTBEAT = "UPDATE stalwart_nodes SET heartbeat_at = ? WHERE id = ?"
LIST_NODES = "SELECT id, info, started_at, heartbeat_at FROM stalwart_nodes ORDER BY id"
DELETE_NODE = "DELETE FROM stalwart_nodes WHERE id = ?"


def list_query(
    status: str | None, limit: int, agent: str | None, newest_first: bool = False
) -> tuple[str, tuple[Any, ...]]:
    """The listing statement; ``newest_first`` reverses the order (the same indexes
    serve it, scanned backwards)."""
    args: tuple[Any, ...]
    if agent is not None and status is not None:
        sql, args = LIST_TASKS_BY_AGENT_STATUS, (agent, status, limit)
    elif agent is not None:
        sql, args = LIST_TASKS_BY_AGENT, (agent, limit)
    elif status is not None:
        sql, args = LIST_TASKS_BY_STATUS, (status, limit)
    else:
        sql, args = LIST_TASKS, (limit,)
    if newest_first:
        sql = sql.replace("ORDER BY created_at, id", "ORDER BY created_at DESC, id DESC")
    return sql, args


def acquire_query(
    owner: str,
    expires: float,
    now: float,
    *,
    task_id: str | None,
    force: bool,
    agent: str | None,
    max_running: int | None,
) -> tuple[str, tuple[Any, ...]]:
    """The claiming statement for :meth:`Store.acquire`'s arguments (a "next task" pick
    takes its row with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL)."""
    if task_id is None and agent is not None and max_running is not None:
        sql = ACQUIRE_NEXT_FOR_AGENT_LIMITED
        return sql, (owner, expires, now, agent, now, agent, now, max_running)
    if task_id is None and agent is not None:
        return ACQUIRE_NEXT_FOR_AGENT, (owner, expires, now, agent, now)
    if task_id is None:
        return ACQUIRE_NEXT, (owner, expires, now, now)
    if force:
        return ACQUIRE_FORCE, (owner, expires, now, task_id)
    return ACQUIRE_ONE, (owner, expires, now, task_id, now)


def pg(sql: str) -> str:
    """The PostgreSQL spelling of a statement written with ``?`` placeholders."""
    return _PG_ONLY.sub(r"\1", sql).replace("?", "%s")
