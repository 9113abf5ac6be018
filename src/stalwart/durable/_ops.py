"""Every store operation, written once, as a program of the database kernel.

Each function here is one operation's statements and decisions (see
:mod:`stalwart.db._program`): it ``yield``\\ s ``(sql, args)``, gets the result
back, and returns the operation's value. :class:`stalwart.durable._store.SQLStore`
runs them through the kernel on SQLite and PostgreSQL alike. To add an
operation: write its SQL in :mod:`._sql`, its program here, and a method on
``SQLStore`` that encodes the arguments and calls ``self._db.write`` (or
``read``); the Store protocol and the contract suite say what it must do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stalwart.db import Program, one_write
from stalwart.durable import _metrics
from stalwart.durable import _sql as q
from stalwart.durable._base import effect_from_row, plan_load
from stalwart.durable._integrity import RawRow
from stalwart.durable._protocol import EffectRecord, Joined, JournalLoad, Lease
from stalwart.errors import CorruptRecord, LeaseLost, StoreError

__all__ = [
    "acquire",
    "acquire_many",
    "append",
    "append_one",
    "cancel",
    "effect_finished",
    "effect_started",
    "fail_corrupt_task",
    "fenced",
    "lease_lost",
    "load_effects",
    "load_journal",
    "load_task",
    "purge",
    "retry",
    "rowcount",
    "rows",
    "rows_of_each",
    "rows_per_statement",
]

_MARK_STARTED = "UPDATE stalwart_effects SET status = 'started', record = NULL WHERE key = ?"
_SET_INPUT = "UPDATE stalwart_tasks SET input = ? WHERE id = ?"
_FENCE_ROW = "SELECT lease_owner, lease_token, status FROM stalwart_tasks WHERE id = ?"
_RECORD = "SELECT record FROM stalwart_journal WHERE task_id = ? AND seq = ?"


def lease_lost(lease: Lease) -> LeaseLost:
    _metrics.LEASES_LOST.inc()
    return LeaseLost(
        f"task {lease.task_id!r}: lease token {lease.token} of {lease.owner!r} is no longer "
        "current (expired and taken over, released, or the task finished)"
    )


def rows(sql: str, args: Sequence[Any]) -> Program[list[tuple[Any, ...]]]:
    """One statement; its rows."""
    return (yield (sql, args)).rows


def rows_of_each(statements: Sequence[tuple[str, Sequence[Any]]]) -> Program[list[tuple[Any, ...]]]:
    """Several statements in one transaction; the rows of all of them."""
    found: list[tuple[Any, ...]] = []
    for sql, args in statements:
        found += (yield (sql, args)).rows
    return found


def rows_per_statement(
    statements: Sequence[tuple[str, Sequence[Any]]],
) -> Program[list[list[tuple[Any, ...]]]]:
    """Several statements in one transaction; each one's rows apart."""
    found: list[list[tuple[Any, ...]]] = []
    for sql, args in statements:
        found.append((yield (sql, args)).rows)
    return found


def rowcount(sql: str, args: Sequence[Any]) -> Program[int]:
    """One statement; how many rows it changed."""
    return (yield (sql, args)).rowcount


def fenced(lease: Lease, sql: str, args: Sequence[Any]) -> Program[None]:
    """A write on behalf of ``lease`` that must change a row, or the lease is lost."""
    if (yield (sql, args)).rowcount == 0:
        raise lease_lost(lease)


def _check_fence(lease: Lease) -> Program[None]:
    row = (yield (_FENCE_ROW, (lease.task_id,))).one()
    if row is None or tuple(row) != (lease.owner, lease.token, "running"):
        raise lease_lost(lease)


def _refused(lease: Lease, row: Sequence[Any], *, same_ok: bool) -> Program[None]:
    """A journal INSERT (``row``: task, seq, kind, name, record, fence...) that wrote
    nothing: LeaseLost if fenced; with ``same_ok``, nothing if the entry there is this
    very record (the append done by an earlier attempt whose answer was lost); else
    refused. Not ``same_ok`` where the INSERT is joined to another write, which a second
    run would repeat (an effect's end, a joined ``also``)."""
    yield from _check_fence(lease)
    if same_ok:
        found = (yield (_RECORD, (row[0], row[1]))).one()
        if found is not None and found[0] is not None and bytes(found[0]) == row[4]:
            return
    raise StoreError(f"task {lease.task_id!r}: journal already has a record #{row[1]}")


def agent_lock(agent: str) -> str:
    """The advisory lock (a name: ``hashtext`` of it) that serializes one agent's capped
    claims across nodes on PostgreSQL; the store names it to the kernel with the write
    (``write(..., lock=)``), which takes it before any statement of the batch. Taken by
    the claim's own statements, mid-batch, it was a lock wait while the batch held row
    locks: a deadlock PostgreSQL broke after a second. SQLite has one writer at a time:
    a claim and its count are atomic anyway."""
    return f"stalwart:agent:{agent}"


def acquire(sql: str, args: Sequence[Any]) -> Program[tuple[Any, ...] | None]:
    """Claim a task (capped: under :func:`agent_lock`, taken by the kernel)."""
    return (yield (sql, args)).one()


def acquire_many(
    agent: str,
    limit: int,
    claim_args: tuple[str, float, float],
    max_running: int | None,
) -> Program[list[tuple[Any, ...]]]:
    """Claim up to ``limit`` of ``agent``'s oldest runnable tasks in this one
    transaction (``claim_args``: owner, lease expiry, now); with ``max_running``, only
    as many as keep the agent's live leases (every node) at most that many: counted
    under :func:`agent_lock` on PostgreSQL, which the kernel takes for the write."""
    now = claim_args[2]
    if max_running is not None:
        live = (yield (q.COUNT_LIVE_LEASES, (agent, now))).one()
        limit = min(limit, max_running - int(live[0] if live else 0))
    if limit <= 0:
        return []
    # the CTE's placeholders come first in the statement, then the claim's
    return (yield (q.ACQUIRE_MANY_FOR_AGENT, (agent, now, limit, *claim_args))).rows


def fail_corrupt_task(
    quarantine: Sequence[Any], finish: Sequence[Any], marker: Sequence[Any]
) -> Program[None]:
    """Nothing good remains of a task whose input is damaged: the input moves to
    quarantine, the task fails, and its row keeps a readable marker."""
    yield (q.QUARANTINE, quarantine)
    yield (q.FINISH, finish)
    yield (_SET_INPUT, marker)


def append(
    lease: Lease, entries: Sequence[tuple[Any, ...]], also: Joined | None = None
) -> Program[Any]:
    """Journal entries, then (``also``) another component's write in the same
    transaction; the latter's value."""
    for row in entries:
        if (yield (q.APPEND, row)).rowcount == 0:
            yield from _refused(lease, row, same_ok=also is None)
    if also is None:
        return None
    program: Program[Any] = also.program(*also.args)
    return (yield from program)


@one_write
def append_one(lease: Lease, row: tuple[Any, ...]) -> Program[None]:
    """One journal entry (a step's record): :func:`append` of one row, written so that
    it may commit alone. Its one write is the fenced INSERT; when that inserts nothing,
    the rest only reads: the entry already there, byte for byte the same, is this
    entry committed by an earlier attempt whose answer was lost (a dropped connection),
    so the append succeeded; anything else is refused as by :func:`append`."""
    if (yield (q.APPEND, row)).rowcount == 0:
        yield from _refused(lease, row, same_ok=True)


def load_task(
    task_id: str,
) -> Program[
    tuple[
        tuple[JournalLoad, list[tuple[RawRow, str]]],
        tuple[dict[int, EffectRecord], list[tuple[int, str]]],
    ]
]:
    """A task's journal and ledger in one read (damage only found, never moved)."""
    journal = yield from load_journal(task_id, None)
    effects = yield from load_effects(task_id, None)
    return journal, effects


def load_journal(
    task_id: str, now: float | None
) -> Program[tuple[JournalLoad, list[tuple[RawRow, str]]]]:
    """Read a task's journal; with ``now``, records failing their checks move to
    quarantine (without, they are only found: a read changes nothing)."""
    found = (yield (q.LOAD_JOURNAL, (task_id,))).rows
    raw = [RawRow(int(s), k, n, None if r is None else bytes(r)) for s, k, n, r in found]
    load, moves = plan_load(task_id, raw)
    for row, reason in moves if now is not None else ():
        yield (q.QUARANTINE, (task_id, row.seq, row.kind, reason, row.record, now))
        yield (q.DELETE_ENTRY, (task_id, row.seq))
    return load, moves


def load_effects(
    task_id: str, now: float | None
) -> Program[tuple[dict[int, EffectRecord], list[tuple[int, str]]]]:
    """A task's ledger. A damaged entry still proves the effect was started: it is kept
    as "started" (so replay never calls blindly) and, with ``now``, its record is
    quarantined (without, it is only found)."""
    found: dict[int, EffectRecord] = {}
    bad: list[tuple[int, str]] = []
    for row in (yield (q.LOAD_EFFECTS, (task_id,))).rows:
        try:
            rec = effect_from_row(row)
        except CorruptRecord as exc:
            key, seq, name = row[0], int(row[2]), row[3]
            if now is not None:
                yield (q.QUARANTINE, (task_id, seq, "effect", str(exc), row[5], now))
                yield (_MARK_STARTED, (key,))
            rec = EffectRecord(key, task_id, seq, name, "started", None, now or row[6])
            bad.append((seq, str(exc)))
        found[rec.seq] = rec
    return found, bad


def effect_started(lease: Lease, args: Sequence[Any]) -> Program[None]:
    if (yield (q.EFFECT_START, args)).rowcount == 0:
        yield from _check_fence(lease)


def effect_finished(
    lease: Lease, key: str, finish_args: Sequence[Any], row: Sequence[Any]
) -> Program[None]:
    """The effect's end and its journal entry: one atomic write."""
    if (yield (q.EFFECT_FINISH, finish_args)).rowcount == 0:
        yield from _check_fence(lease)
        raise StoreError(f"ledger has no started entry {key!r}")
    if (yield (q.APPEND, row)).rowcount == 0:
        yield from _refused(lease, row, same_ok=False)


def purge(before: float, mode: str) -> Program[int]:
    ids = [r[0] for r in (yield (q.PURGE_SELECT, (before, 10_000))).rows]
    count = 0
    for tid in ids:
        had = (yield (q.PURGE_JOURNAL, (tid,))).rowcount
        had += (yield (q.PURGE_EFFECTS, (tid,))).rowcount
        if mode == "delete":
            had += (yield (q.PURGE_TASK, (tid,))).rowcount
        count += 1 if had else 0
    return count


def retry(task_id: str, now: float) -> Program[bool]:
    """A failed or quarantined task back to pending, its last recorded step failure
    dropped (it would replay the same failure); False when it is neither."""
    if (yield (q.RETRY_TASK, (now, task_id))).rowcount == 0:
        return False
    yield (q.RETRY_DROP_FAILED, (task_id, task_id))
    return True


def cancel(task_id: str, record: bytes, now: float) -> Program[list[tuple[Any, ...]]]:
    """End an unfinished task ``cancelled`` (fencing its lease); its row as it now is."""
    yield (q.CANCEL, (record, now, now, task_id))
    return (yield (q.SELECT_TASK, (task_id,))).rows
