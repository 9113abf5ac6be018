"""Fakes for users' own tests (and ours). Nothing in ``src/`` imports this package."""

from stalwart.testing._agents import ProbeAgent
from stalwart.testing._clock import FakeClock

__all__ = ["FakeClock", "ProbeAgent"]
