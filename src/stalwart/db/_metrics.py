"""The database kernel's metrics, registered on :data:`stalwart.observe.REGISTRY`.

The commit metrics keep the ``stalwart_durable_`` names they had before the
kernel existed (dashboards and alert rules use them)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from stalwart.observe import REGISTRY

__all__ = [
    "COMMITS",
    "COMMIT_BATCH",
    "COMMIT_SECONDS",
    "INLINE_COMMITS",
    "LAZY_COMMITS",
    "RETRIES",
    "SYNCS",
    "WRITER_RESTARTS",
    "WRITE_LOCK_WAIT",
]

COMMIT_BATCH = Histogram(
    "stalwart_durable_commit_batch_size",
    "Operations per group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
COMMITS = Counter(
    "stalwart_db_commits_total",
    "Transactions the SQLite writer committed, by whether they changed the file "
    '(wrote="true": an fsync at full durability) or only read.',
    ["wrote"],
    registry=REGISTRY,
)
LAZY_COMMITS = Counter(
    "stalwart_db_lazy_commits_total",
    "Of the commits above, those of lazy jobs only (at full durability: not fsynced; the "
    "next full commit syncs them), by whether they changed the file.",
    ["wrote"],
    registry=REGISTRY,
)
INLINE_COMMITS = Counter(
    "stalwart_db_inline_commits_total",
    "Commits of lazy jobs made by their caller's own thread while the SQLite writer was "
    "idle (no hand-off to the writer thread and back); in the commits above, and at full "
    "durability in the lazy commits.",
    registry=REGISTRY,
)
SYNCS = Counter(
    "stalwart_db_syncs_total",
    "Requests to make every commit so far durable (Database.sync: an fsync of SQLite's "
    "WAL, a synchronous commit on PostgreSQL) that did work, by dialect.",
    ["dialect"],
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "stalwart_durable_commit_seconds",
    "Duration of one group commit (execute + commit).",
    buckets=(0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
    registry=REGISTRY,
)
RETRIES = Counter(
    "stalwart_db_retries_total",
    "Database operations retried after a transient failure (lost connection, lock wait), "
    "by dialect.",
    ["dialect"],
    registry=REGISTRY,
)
WRITER_RESTARTS = Counter(
    "stalwart_db_writer_restarts_total",
    "SQLite writer threads started again after theirs died.",
    registry=REGISTRY,
)
WRITE_LOCK_WAIT = Histogram(
    "stalwart_db_write_lock_wait_seconds",
    "Time a SQLite writer waited for the file's write lock (held by another process's "
    "writer) before a write transaction.",
    buckets=(0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
    registry=REGISTRY,
)
