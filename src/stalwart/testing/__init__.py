"""Fakes for users' own tests (and ours). Nothing in ``src/`` imports this package."""

from stalwart.testing._agents import ProbeAgent
from stalwart.testing._clock import FakeClock
from stalwart.testing._events import EventWaiter, eventually
from stalwart.testing._postgres import PG_ADMIN, postgres_database, postgres_reachable
from stalwart.testing._store import MemoryStore

__all__ = [
    "PG_ADMIN",
    "EventWaiter",
    "FakeClock",
    "MemoryStore",
    "ProbeAgent",
    "postgres_database",
    "eventually",
    "postgres_reachable",
]
