"""Pieces every backend shares: row decoding, corruption reporting, ids, settings checks."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from stalwart.durable import _metrics
from stalwart.durable._integrity import (
    RawRow,
    check_json,
    decode_record,
    encode_record,
    journal_body,
    plan_recovery,
)
from stalwart.durable._protocol import (
    EFFECT_STATUSES,
    TASK_STATUSES,
    EffectRecord,
    JournalEntry,
    JournalLoad,
    NodeRecord,
    TaskRecord,
)
from stalwart.errors import ConfigError, CorruptRecord, InvalidMessage
from stalwart.observe import EventBus, get_logger

__all__ = [
    "DURABILITY_LEVELS",
    "Reporter",
    "check_durability",
    "check_lease_seconds",
    "check_claim_limit",
    "check_max_running",
    "effect_from_row",
    "encode_effect",
    "encode_entry",
    "encode_input",
    "encode_outcome",
    "new_seed",
    "new_task_id",
    "node_from_row",
    "plan_load",
    "task_from_row",
]

DURABILITY_LEVELS = ("full", "normal", "off")

_log = get_logger("stalwart.durable")

MAX_TRACE = 128
"""The longest ``traceparent`` a task keeps (a W3C one is 55 characters)."""

TASK_COLUMNS = (
    "id, agent, status, input, seed, attempts, lease_owner, lease_token, lease_expires, "
    "outcome, created_at, updated_at, finished_at, trace"
)


def new_task_id() -> str:
    return uuid.uuid4().hex


def new_seed() -> int:
    # 62 bits: fits a signed BIGINT column on every backend.
    return secrets.randbits(62)


def check_durability(durability: str) -> str:
    if durability not in DURABILITY_LEVELS:
        raise ConfigError(
            f"durable.durability = {durability!r}; choose one of {', '.join(DURABILITY_LEVELS)}"
        )
    return durability


def check_lease_seconds(lease_seconds: float) -> None:
    if not isinstance(lease_seconds, int | float) or not 0 < lease_seconds <= 3600:
        raise ConfigError(f"lease_seconds = {lease_seconds!r} must be in (0, 3600]")


MAX_CLAIM = 10_000
"""The most tasks one :meth:`Store.acquire_many` may claim."""


def check_claim_limit(limit: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_CLAIM:
        raise ConfigError(f"claim limit = {limit!r} must be an int in 1..{MAX_CLAIM}")


def check_max_running(max_running: int | None) -> None:
    if max_running is not None and (
        not isinstance(max_running, int) or isinstance(max_running, bool) or max_running < 1
    ):
        raise ConfigError(f"max_running = {max_running!r} must be a positive int (or None)")


def check_task_args(agent: str, task_id: str | None, seed: int | None) -> None:
    if not isinstance(agent, str) or not agent:
        raise InvalidMessage(f"task agent must be a non-empty str, got {agent!r}")
    if task_id is not None and (not isinstance(task_id, str) or not 0 < len(task_id) <= 200):
        raise InvalidMessage(f"task_id must be a str of 1..200 characters, got {task_id!r}")
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed < 2**62):
        raise InvalidMessage(f"seed must be an int in [0, 2**62), got {seed!r}")


def encode_input(task_id: str, value: Any) -> bytes:
    check_json(value, f"input of task {task_id!r}")
    return encode_record(f"{task_id}/input", 0, value)


def encode_outcome(task_id: str, value: Any) -> bytes:
    check_json(value, f"outcome of task {task_id!r}")
    return encode_record(f"{task_id}/outcome", 0, value)


def encode_entry(task_id: str, entry: JournalEntry) -> bytes:
    """Encode a journal entry; its value must already have passed :func:`check_json`."""
    return encode_record(task_id, entry.seq, journal_body(entry.kind, entry.name, entry.value))


def encode_effect(task_id: str, seq: int, result: Any) -> bytes:
    return encode_record(f"{task_id}/effect", seq, result)


class Reporter:
    """Logs, counts and announces integrity failures: one place, same fields everywhere."""

    def __init__(self, url: str, events: EventBus) -> None:
        self.url = url
        self.events = events

    def corrupt(self, task_id: str, seq: int, kind: str, reason: str) -> None:
        _metrics.CORRUPT_RECORDS.labels(kind=kind).inc()
        _log.error(
            "durable_record_quarantined",
            store=self.url,
            task_id=task_id,
            seq=seq,
            kind=kind,
            reason=reason,
        )
        self.events.emit(
            "durable.record_quarantined",
            store=self.url,
            task_id=task_id,
            seq=seq,
            kind=kind,
            reason=reason,
        )


def node_from_row(row: Sequence[Any]) -> NodeRecord:
    """A NodeRecord from ``(id, info, started_at, heartbeat_at)``; bad info reads as {}."""
    try:
        info = msgspec.json.decode(bytes(row[1])) if row[1] is not None else {}
    except msgspec.DecodeError:
        info = {}
    return NodeRecord(
        str(row[0]), info if isinstance(info, dict) else {}, float(row[2]), float(row[3])
    )


def task_from_row(row: Sequence[Any]) -> TaskRecord:
    """Build a TaskRecord from a row in TASK_COLUMNS order; damaged rows raise CorruptRecord."""
    (
        tid,
        agent,
        status,
        input_rec,
        seed,
        attempts,
        owner,
        token,
        expires,
        outcome_rec,
        created,
        updated,
        finished,
        trace,
    ) = row
    if status not in TASK_STATUSES:
        raise CorruptRecord(f"task {tid!r} has an unknown status {status!r}")
    value = decode_record(f"{tid}/input", 0, input_rec)
    outcome = decode_record(f"{tid}/outcome", 0, outcome_rec) if outcome_rec is not None else None
    return TaskRecord(
        id=tid,
        agent=agent,
        input=value,
        status=status,
        seed=int(seed),
        attempts=int(attempts),
        lease_owner=owner,
        lease_token=int(token),
        lease_expires=expires,
        outcome=outcome,
        created_at=created,
        updated_at=updated,
        finished_at=finished,
        trace=trace or "",
    )


def effect_from_row(row: Sequence[Any]) -> EffectRecord:
    """Build an EffectRecord from (key, task_id, seq, name, status, record, updated_at)."""
    key, task_id, seq, name, status, record, updated = row
    if status not in EFFECT_STATUSES:
        raise CorruptRecord(f"ledger entry {key!r} has an unknown status {status!r}")
    result = decode_record(f"{task_id}/effect", int(seq), record) if record is not None else None
    return EffectRecord(key, task_id, int(seq), name, status, result, updated)


def plan_load(task_id: str, rows: Sequence[RawRow]) -> tuple[JournalLoad, list[tuple[RawRow, str]]]:
    """Decode a task's rows; return the usable journal and the rows to move to quarantine."""
    plan = plan_recovery(task_id, rows)
    by_seq = {r.seq: r for r in rows}
    moves = [(by_seq[seq], reason) for seq, reason in plan.quarantine]
    entries = [JournalEntry(d.seq, d.kind, d.name, d.value) for d in plan.keep]
    return JournalLoad(entries, plan.quarantine), moves
