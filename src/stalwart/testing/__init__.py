"""Fakes for users' own tests (and ours). Nothing in ``src/`` imports this package."""

from typing import TYPE_CHECKING, Any

from stalwart.testing._agents import ProbeAgent
from stalwart.testing._clock import FakeClock
from stalwart.testing._events import EventWaiter, eventually
from stalwart.testing._obedient import ObedientModel, Seen, Step
from stalwart.testing._postgres import PG_ADMIN, postgres_database, postgres_reachable
from stalwart.testing._store import MemoryStore

if TYPE_CHECKING:
    from stalwart.testing._contract import StoreContract

__all__ = [
    "PG_ADMIN",
    "EventWaiter",
    "FakeClock",
    "MemoryStore",
    "ObedientModel",
    "ProbeAgent",
    "Seen",
    "Step",
    "StoreContract",
    "postgres_database",
    "eventually",
    "postgres_reachable",
]


def __getattr__(name: str) -> Any:
    # The contract kit imports pytest: only when asked for.
    if name == "StoreContract":
        from stalwart.testing._contract import StoreContract

        return StoreContract
    raise AttributeError(f"module 'stalwart.testing' has no attribute {name!r}")
