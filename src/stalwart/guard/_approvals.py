"""The approval queue: sensitive tool calls held for a person to allow or deny.

A call the taint policy holds is stored once per (task, tool, arguments)
with the reason; ``stalwart approvals list/approve/deny`` (or this class)
decides it. The task is told the call is pending and goes on without it; if
the model proposes the same call again after it was approved, it runs (the
decision is read inside a journaled step, so a resumed task sees the same).
Arguments are stored as the journal stores them; listings show them redacted
unless asked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from typing import Any, Literal

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ConfigError
from stalwart.guard._db import connect
from stalwart.guard._redact import output_redactor
from stalwart.guard._sealed import seal

__all__ = ["Approval", "ApprovalQueue"]

Status = Literal["pending", "approved", "denied"]


@dataclasses.dataclass(frozen=True, slots=True)
class Approval:
    """One held tool call: what, for which task, why, and what a person decided."""

    id: str
    task_id: str
    agent: str
    tool: str
    arguments: dict[str, Any]
    reason: str
    status: Status
    created: float
    decided: float | None = None
    decided_by: str | None = None

    def as_dict(self, *, reveal: bool = False) -> dict[str, Any]:
        """As JSON data; arguments redacted unless ``reveal``."""
        data = dataclasses.asdict(self)
        if not reveal:
            data["arguments"] = output_redactor().redact_data(self.arguments)
        return data


def approval_id(task_id: str, tool: str, arguments: Any) -> str:
    """Deterministic: the same call in the same task is held once, even after a resume."""
    canon = json.dumps(arguments, sort_keys=True, default=str)
    return hashlib.sha256(f"{task_id}\0{tool}\0{canon}".encode()).hexdigest()[:16]


class ApprovalQueue:
    """Held tool calls in the store database (see the module docstring)."""

    def __init__(self, url: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.url = url
        self.clock = clock
        self._conn = connect(url)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def submit(
        self, *, task_id: str, agent: str, tool: str, arguments: dict[str, Any], reason: str
    ) -> Approval:
        """Hold this call (once: the same call again returns the existing entry)."""
        aid = approval_id(task_id, tool, arguments)
        with self._lock:
            self._conn.execute(
                "INSERT INTO guard_approvals "
                "(id, task_id, agent, tool, arguments, reason, status, created) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT (id) DO NOTHING",
                (aid, task_id, agent, tool, json.dumps(seal(arguments), default=str), reason,
                 self.clock.time()),
            )  # fmt: skip
        found = self.get(aid)
        assert found is not None
        return found

    def get(self, approval: str) -> Approval | None:
        """The held call with this id, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id, task_id, agent, tool, arguments, reason, status, created, decided, "
                "decided_by FROM guard_approvals WHERE id = ?",
                (approval,),
            ).fetchone()
        return _row(row) if row else None

    def list(self, status: Status | None = None, limit: int = 100) -> list[Approval]:
        """Held calls, oldest first (only those with ``status`` if given)."""
        query = (
            "SELECT id, task_id, agent, tool, arguments, reason, status, created, decided, "
            "decided_by FROM guard_approvals"
        )
        args: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY created LIMIT ?", (*args, limit))
            return [_row(r) for r in rows.fetchall()]

    def decide(self, approval: str, *, approve: bool, by: str = "cli") -> Approval:
        """Approve or deny a pending call; deciding twice is an error."""
        status = "approved" if approve else "denied"
        with self._lock:
            cur = self._conn.execute(
                "UPDATE guard_approvals SET status = ?, decided = ?, decided_by = ? "
                "WHERE id = ? AND status = 'pending'",
                (status, self.clock.time(), by, approval),
            )
        found = self.get(approval)
        if found is None:
            raise ConfigError(f"no held tool call {approval!r}")
        if cur.rowcount == 0 and found.status != status:
            raise ConfigError(f"held tool call {approval!r} was already {found.status}")
        return found


def _row(row: Any) -> Approval:
    return Approval(
        id=row[0], task_id=row[1], agent=row[2], tool=row[3], arguments=json.loads(row[4]),
        reason=row[5], status=row[6], created=row[7], decided=row[8], decided_by=row[9],
    )  # fmt: skip
