"""Metrics of the durable layer, registered on :data:`stalwart.observe.REGISTRY`."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from stalwart.observe import REGISTRY

__all__ = [
    "COMMIT_BATCH",
    "COMMIT_SECONDS",
    "CORRUPT_RECORDS",
    "EFFECT_OUTCOMES",
    "LEASES_LOST",
    "RETENTION_PURGED",
    "STEPS",
    "STORE_FILES_QUARANTINED",
]

STEPS = Counter(
    "stalwart_durable_steps_total",
    "Journaled steps, by kind and whether they were replayed from the journal.",
    ["kind", "replayed"],
    registry=REGISTRY,
)
COMMIT_BATCH = Histogram(
    "stalwart_durable_commit_batch_size",
    "Operations per group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "stalwart_durable_commit_seconds",
    "Duration of one group commit (execute + commit).",
    buckets=(0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
    registry=REGISTRY,
)
CORRUPT_RECORDS = Counter(
    "stalwart_durable_corrupt_records_total",
    "Records that failed their checksum or format check (quarantined), by kind.",
    ["kind"],
    registry=REGISTRY,
)
STORE_FILES_QUARANTINED = Counter(
    "stalwart_durable_store_files_quarantined_total",
    "Store files found corrupt or unreadable at start-up and moved aside.",
    registry=REGISTRY,
)
EFFECT_OUTCOMES = Counter(
    "stalwart_durable_effect_outcomes_total",
    "Side-effect steps by outcome: completed, replayed, retried (same key), reconciled, unknown.",
    ["outcome"],
    registry=REGISTRY,
)
LEASES_LOST = Counter(
    "stalwart_durable_leases_lost_total",
    "Times a runner found its task lease taken over or expired.",
    registry=REGISTRY,
)
RETENTION_PURGED = Counter(
    "stalwart_durable_retention_purged_total",
    "Finished tasks whose journal was compacted or that were deleted by retention.",
    ["mode"],
    registry=REGISTRY,
)
