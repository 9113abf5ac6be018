"""The PostgreSQL store: many nodes on one database.

The operations are :class:`~stalwart.durable._store.SQLStore`'s; the pool, group
commit (``flushers`` concurrent commits), reconnects and retries are the
database kernel's (:class:`stalwart.db.PostgresDatabase`). Runnable tasks are
claimed with ``FOR UPDATE SKIP LOCKED``, so many nodes lease from one database
without blocking each other.

Durability: "full" keeps ``synchronous_commit = on`` (a commit is on disk, on the
primary, before it is acknowledged); "normal" and "off" set it off for this
store's sessions (a server crash may lose the last commits; never corrupts).
"""

from __future__ import annotations

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.db._postgres import PostgresDatabase
from stalwart.durable._store import SQLStore
from stalwart.observe import EventBus

__all__ = ["PostgresStore"]


class PostgresStore(SQLStore):
    """A :class:`~stalwart.durable.Store` in a PostgreSQL database.

    ``url`` is a libpq URL (``postgresql://user:pass@host:5432/db``); the password
    never appears in logs (the ``url`` property is redacted). ``pool_size`` bounds
    the connections; ``flushers`` is the number of concurrent group commits.
    ``migrate=False`` (read-only commands) never creates or migrates the schema.
    """

    def __init__(
        self,
        url: str,
        *,
        durability: str = "full",
        clock: Clock = SYSTEM_CLOCK,
        timeout: float | None = None,
        events: EventBus | None = None,
        pool_size: int = 8,
        flushers: int = 2,
        max_batch: int = 512,
        idle_in_transaction_timeout: float = 2.0,
        migrate: bool = True,
    ) -> None:
        db = PostgresDatabase(
            url,
            durability=durability,
            timeout=timeout,
            pool_size=pool_size,
            flushers=flushers,
            max_batch=max_batch,
            idle_in_transaction_timeout=idle_in_transaction_timeout,
            readonly=not migrate,
        )
        super().__init__(db, clock=clock, events=events, migrate=migrate)
        self.url_with_credentials = url
        self.postgres = db

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
