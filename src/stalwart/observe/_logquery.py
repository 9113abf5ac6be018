"""What a log search asks for: :class:`LogQuery` and the times it takes (``parse_since``).

The store that answers it -- the node's central log store, in a SQLite file or a
PostgreSQL table -- keeps its tables through the database kernel, a layer above
this one: it is :class:`stalwart.server.LogStore` (and ``stalwart.server.search_logs``).
"""

from __future__ import annotations

import dataclasses
import datetime

__all__ = ["LEVELS", "LogQuery", "levels_from", "parse_since"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

LEVELS = ("debug", "info", "warning", "error", "critical")
"""The log levels, least severe first."""


def levels_from(level: str) -> tuple[str, ...]:
    """``level`` and every level above it (``"warning"``: warning, error, critical).

    Raises :class:`ValueError` naming the levels for anything else.
    """
    name = level.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    return LEVELS[LEVELS.index(name) :]


def parse_since(text: str, *, now: float) -> float:
    """``10m``/``2h``/``30s``/``1d`` ago, or an ISO-8601 time, as epoch seconds.

    Raises :class:`ValueError` with a message a user can act on.
    """
    text = text.strip()
    if text and text[-1] in _UNITS and text[:-1].replace(".", "", 1).isdigit():
        return now - float(text[:-1]) * _UNITS[text[-1]]
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration (10m, 2h, 30s, 1d) or an ISO-8601 time"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


@dataclasses.dataclass(frozen=True, slots=True)
class LogQuery:
    """Filters of a log search; every given filter must match (AND).

    ``level`` keeps lines at that level and above (``"warning"`` finds warnings, errors
    and critical lines), as a log level filter does everywhere else;
    ``since``/``until`` are epoch seconds; ``grep`` is a case-insensitive substring
    of the JSON line; ``limit`` caps the rows (newest ``limit`` lines, returned
    oldest first).
    """

    agent_id: str | None = None
    task_id: str | None = None
    trace_id: str | None = None
    level: str | None = None
    event: str | None = None
    since: float | None = None
    until: float | None = None
    grep: str | None = None
    limit: int = 1000
