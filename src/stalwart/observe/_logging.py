from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "get_logger"]


def configure_logging(
    *, level: int = logging.INFO, stream: TextIO | None = None, json: bool = True, **bound: Any
) -> None:
    """Configure structlog for JSON lines with a timestamp and level on every line.

    ``bound`` fields (e.g. ``node="n1"``) are added to every line of this process.
    """
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.format_exc_info,
    ]
    if bound:
        processors.insert(0, _bind_static(bound))
    processors.append(
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def _bind_static(fields: dict[str, Any]) -> Any:
    def processor(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict

    return processor


def get_logger(name: str) -> Any:
    """A lazy structlog logger tagged with ``logger_name=name`` (configured at first use)."""
    return structlog.get_logger(logger_name=name)
