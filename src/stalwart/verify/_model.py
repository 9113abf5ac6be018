"""The checklist as data: items, levels, statuses and results."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

__all__ = ["ITEMS", "STATUSES", "Item", "ItemResult", "Level", "Status"]

Level = Literal["critical", "recommended"]
Status = Literal["complete", "partial", "failed", "not-run"]
"""``complete``: every point of the item was exercised and held. ``partial``: the
mechanism exists but a point is unmet, only configured, or shown below production
scale. ``failed``: exercised, and the app's behaviour was wrong. ``not-run``: verify
could not exercise it (the evidence says why, the remediation what to add); also
verify's own errors, with the traceback in the evidence, never the app's failure."""
STATUSES: tuple[Status, ...] = ("complete", "partial", "failed", "not-run")


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    id: str
    level: Level
    title: str
    category: str


ITEMS: tuple[Item, ...] = (
    Item("PA-1", "critical", "isolated process per agent; one crash affects no other", "process"),
    Item(
        "PA-2",
        "critical",
        "supervision, restart within seconds, restart intensity limits",
        "process",
    ),
    Item(
        "PA-3",
        "critical",
        "message passing only; explicit timeout on every inter-agent call",
        "process",
    ),
    Item(
        "EH-1",
        "critical",
        "retries with exponential backoff and jitter; 400/401/403 not retried",
        "errors",
    ),
    Item(
        "EH-2",
        "critical",
        "a circuit breaker per dependency; trips on error rate; half-open recovery",
        "errors",
    ),
    Item("EH-3", "critical", "explicit timeouts everywhere, sized per operation type", "errors"),
    Item(
        "EH-4", "critical", "errors logged with context, classified, counted as metrics", "errors"
    ),
    Item("SM-1", "critical", "checkpoint after each significant step, durable", "state"),
    Item("SM-2", "critical", "restore after a kill mid-task, same results", "state"),
    Item("SM-3", "critical", "bounded conversation history; 50+ step tasks", "state"),
    Item("SM-4", "critical", "side effects idempotent or deduplicated", "state"),
    Item(
        "GD-1",
        "recommended",
        "model fallback chains with acceptable fallback quality",
        "degradation",
    ),
    Item("GD-2", "recommended", "tool unavailability handled without crashing", "degradation"),
    Item(
        "GD-3", "recommended", "degradation logged, measured, alerted when prolonged", "degradation"
    ),
    Item(
        "MA-1",
        "critical",
        "liveness and readiness endpoints wired to the orchestrator",
        "monitoring",
    ),
    Item("MA-2", "critical", "key metrics instrumented", "monitoring"),
    Item(
        "MA-3",
        "critical",
        "alert rules with warning and critical thresholds, each tested",
        "monitoring",
    ),
    Item("MA-4", "critical", "live health dashboard", "monitoring"),
    Item("MA-5", "critical", "structured, centralized, searchable logs", "monitoring"),
    Item(
        "SE-1", "critical", "secrets in a secrets manager, rotatable without downtime", "security"
    ),
    Item(
        "SE-2",
        "critical",
        "inputs validated; injections cannot cause unauthorized actions",
        "security",
    ),
    Item(
        "SE-3",
        "critical",
        "outputs and logs free of PII and credentials; least-privilege tools",
        "security",
    ),
    Item(
        "SE-4",
        "critical",
        "spend and rate limits per task, agent and day that stop and alert",
        "security",
    ),
    Item("LC-1", "recommended", "load at 2-3x average", "load"),
    Item("LC-2", "recommended", "chaos: kills, network blocks, corrupt checkpoints", "load"),
    Item("LC-3", "recommended", "soak test: leaks and growth detected", "load"),
    Item("LC-4", "recommended", "results documented as the regression baseline", "load"),
)


@dataclasses.dataclass(slots=True)
class ItemResult:
    """One item's verdict, with the evidence it was measured on."""

    id: str
    level: Level
    title: str
    status: Status
    evidence: dict[str, Any]
    remediation: str | None = None
    seconds: float = 0.0
    criterion: str = ""
    """What the item must show to be complete (stated by its check)."""
    measured: str = ""
    """What this run measured, in the criterion's terms."""

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
