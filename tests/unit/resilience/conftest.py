from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from stalwart.observe import REGISTRY
from stalwart.resilience import BreakerRegistry
from stalwart.testing import FakeClock

_names = itertools.count()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> BreakerRegistry:
    return BreakerRegistry(clock=clock)


@pytest.fixture
def dep() -> str:
    """A dependency name no other test uses, so metric samples start at zero."""
    return f"dep-{next(_names)}"


@pytest.fixture
def metric() -> Callable[..., float]:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    return value
