"""Observability: structured events and logs (metrics, log store and alerts grow here)."""

from stalwart.observe._events import Event, EventBus, Subscription
from stalwart.observe._logging import configure_logging, get_logger
from stalwart.observe._metrics import REGISTRY

__all__ = ["REGISTRY", "Event", "EventBus", "Subscription", "configure_logging", "get_logger"]
