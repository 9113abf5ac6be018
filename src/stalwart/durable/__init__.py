"""Durable execution: the store protocol and backends, step journal, idempotency ledger.

Public API (see ``docs/durable.md``): a :class:`Store` (``SQLiteStore`` by
default, ``PostgresStore`` for many nodes), a :class:`Runner` that runs
workflows under leases, the step :class:`Context` (``ctx.step``, ``ctx.effect``,
``ctx.now``, ``ctx.random``, ``ctx.sleep``, checkpoints), conversation
:class:`History` bounding, and :class:`Retention`.
"""

from typing import TYPE_CHECKING, Any

from stalwart.durable._base import new_task_id
from stalwart.durable._history import (
    History,
    HistoryStrategy,
    SlidingWindow,
    Summarize,
    count_messages,
)
from stalwart.durable._integrity import FORMAT_VERSION, check_json
from stalwart.durable._journal import Context
from stalwart.durable._ledger import NOT_DELIVERED, effect_key
from stalwart.durable._open import open_store, store_from_url
from stalwart.durable._probe import WriteProbe
from stalwart.durable._protocol import (
    TASK_STATUSES,
    EffectRecord,
    Joined,
    JournalEntry,
    JournalLoad,
    Lease,
    NodeRecord,
    QuarantinedRecord,
    Store,
    TaskQuery,
    TaskRecord,
)
from stalwart.durable._retention import Retention
from stalwart.durable._runner import Runner, TaskResult, Workflow
from stalwart.durable._schema import SCHEMA_VERSION
from stalwart.durable._sqlite import SQLiteStore
from stalwart.durable._tokens import ApproxCounter, TiktokenCounter, TokenCounter, default_counter

if TYPE_CHECKING:
    from stalwart.durable._postgres import PostgresStore

__all__ = [
    "FORMAT_VERSION",
    "NOT_DELIVERED",
    "SCHEMA_VERSION",
    "TASK_STATUSES",
    "ApproxCounter",
    "Context",
    "EffectRecord",
    "History",
    "HistoryStrategy",
    "Joined",
    "JournalEntry",
    "JournalLoad",
    "Lease",
    "NodeRecord",
    "PostgresStore",
    "QuarantinedRecord",
    "Retention",
    "Runner",
    "SQLiteStore",
    "SlidingWindow",
    "Store",
    "Summarize",
    "TaskQuery",
    "TaskRecord",
    "TaskResult",
    "TiktokenCounter",
    "TokenCounter",
    "Workflow",
    "WriteProbe",
    "check_json",
    "count_messages",
    "default_counter",
    "effect_key",
    "new_task_id",
    "open_store",
    "store_from_url",
]


def __getattr__(name: str) -> Any:
    # PostgresStore is imported on first use: psycopg costs ~100 ms of start-up
    # that SQLite-only processes (every agent child by default) should not pay.
    if name == "PostgresStore":
        from stalwart.durable._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'stalwart.durable' has no attribute {name!r}")
