"""``open_store(url)``: build a store from a URL, with a clear error for a wrong one."""

from __future__ import annotations

from typing import Any

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.db import parse_url
from stalwart.durable._protocol import Store
from stalwart.observe import EventBus

__all__ = ["open_store", "store_from_url"]


def store_from_url(
    url: str,
    *,
    durability: str = "full",
    clock: Clock = SYSTEM_CLOCK,
    timeout: float | None = None,
    events: EventBus | None = None,
    **options: Any,
) -> Store:
    """A store for ``url``, not yet opened. Unknown schemes raise ConfigError.

    ``migrate=False`` (for commands that only read) never creates or migrates
    the schema: opening a database without it raises SchemaMissing."""
    parsed = parse_url(url)
    if parsed.dialect == "sqlite":
        from stalwart.durable._sqlite import SQLiteStore

        return SQLiteStore(
            parsed.target,
            durability=durability,
            clock=clock,
            timeout=timeout,
            events=events,
            **options,
        )
    from stalwart.durable._postgres import PostgresStore

    return PostgresStore(
        parsed.target, durability=durability, clock=clock, timeout=timeout, events=events, **options
    )


async def open_store(url: str, **kwargs: Any) -> Store:
    """Build the store for ``url`` and open it (connect, check, migrate)."""
    store = store_from_url(url, **kwargs)
    await store.open()
    return store
