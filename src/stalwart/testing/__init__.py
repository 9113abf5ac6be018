"""Fakes for users' own tests (and ours). Nothing in ``src/`` imports this package."""

from stalwart.testing._agents import ProbeAgent
from stalwart.testing._clock import FakeClock
from stalwart.testing._store import MemoryStore

__all__ = ["FakeClock", "MemoryStore", "ProbeAgent"]
