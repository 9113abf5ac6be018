"""Model metrics: the shared catalog's series (``stalwart.observe.catalog``), plus fallbacks."""

from __future__ import annotations

from prometheus_client import Counter

from stalwart.observe import REGISTRY, catalog

__all__ = [
    "COST",
    "DEGRADATION_EVENTS",
    "DEGRADATION_SECONDS",
    "DEGRADED",
    "FALLBACKS",
    "MODEL_ERRORS",
    "MODEL_LATENCY",
    "MODEL_REQUESTS",
    "MODEL_TOKENS",
]

MODEL_REQUESTS = catalog.MODEL_REQUESTS  # labels: model, provider, operation
MODEL_ERRORS = catalog.MODEL_ERRORS  # labels: model, provider, error_class
MODEL_LATENCY = catalog.MODEL_LATENCY  # labels: model, provider, operation
MODEL_TOKENS = catalog.MODEL_TOKENS  # labels: model, provider, type
COST = catalog.MODEL_COST  # labels: model, provider
DEGRADED = catalog.DEGRADED  # labels: component
DEGRADATION_EVENTS = catalog.DEGRADATION_EVENTS  # labels: component, kind
DEGRADATION_SECONDS = catalog.DEGRADATION_SECONDS  # labels: component

FALLBACKS = Counter(
    "stalwart_fallbacks",
    "Calls served by a fallback model instead of the chain's primary",
    ["chain", "from_model", "to_model"],
    registry=REGISTRY,
)
