"""Metrics of the durable layer, registered on :data:`stalwart.observe.REGISTRY`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from stalwart.db._metrics import COMMIT_BATCH, COMMIT_SECONDS
from stalwart.observe import REGISTRY

__all__ = [
    "COMMIT_BATCH",
    "COMMIT_SECONDS",
    "CORRUPT_RECORDS",
    "EFFECT_OUTCOMES",
    "LEASES_LOST",
    "LEASE_ASKED",
    "RETENTION_PURGED",
    "STEPS",
]

STEPS = Counter(
    "stalwart_durable_steps_total",
    "Journaled steps, by kind and whether they were replayed from the journal.",
    ["kind", "replayed"],
    registry=REGISTRY,
)
CORRUPT_RECORDS = Counter(
    "stalwart_durable_corrupt_records_total",
    "Records that failed their checksum or format check (quarantined), by kind.",
    ["kind"],
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
LEASE_ASKED = Gauge(
    "stalwart_lease_seconds_asked",
    "The lease a runner's last renewal round asked for: lease_seconds, or up to three "
    "times it while renewals come back late (a busy process or store)",
    registry=REGISTRY,
)
