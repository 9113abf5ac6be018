"""``open_store(url)``: build a store from a URL, with a clear error for a wrong one."""

from __future__ import annotations

import urllib.parse
from typing import Any

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.durable._protocol import Store
from stalwart.errors import ConfigError
from stalwart.observe import EventBus

__all__ = ["open_store", "store_from_url"]

_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, postgresql://user@host:port/dbname"
)


def store_from_url(
    url: str,
    *,
    durability: str = "full",
    clock: Clock = SYSTEM_CLOCK,
    timeout: float | None = None,
    events: EventBus | None = None,
    **options: Any,
) -> Store:
    """A store for ``url``, not yet opened. Unknown schemes raise ConfigError."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"durable.store_url = {url!r} is not a store URL; expected {_FORMS}")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"durable.store_url = {url!r} names no file; expected {_FORMS}")
        from stalwart.durable._sqlite import SQLiteStore

        return SQLiteStore(
            urllib.parse.unquote(path),
            durability=durability,
            clock=clock,
            timeout=timeout,
            events=events,
            **options,
        )
    if scheme in ("postgresql", "postgres"):
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname and not parts.path.strip("/") and not parts.query:
            # libpq would fill in its defaults (a local socket, the user's database):
            # a store that "works" somewhere nobody meant
            raise ConfigError(
                f"durable.store_url = {url!r} names no host and no database; expected {_FORMS}"
            )
        from stalwart.durable._postgres import PostgresStore

        return PostgresStore(
            url, durability=durability, clock=clock, timeout=timeout, events=events, **options
        )
    raise ConfigError(
        f"durable.store_url = {url!r} has an unsupported scheme {scheme!r}; expected {_FORMS}"
    )


async def open_store(url: str, **kwargs: Any) -> Store:
    """Build the store for ``url`` and open it (connect, check, migrate)."""
    store = store_from_url(url, **kwargs)
    await store.open()
    return store
