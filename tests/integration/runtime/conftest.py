from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from stalwart.config import RuntimeSettings
from stalwart.observe import EventBus
from stalwart.runtime import ChildSpec, Runtime, SupervisorSpec
from stalwart.testing import EventWaiter, ProbeAgent

FAST = RuntimeSettings(heartbeat_interval=0.2, start_timeout=10.0)


def probes(n: int, **kw: Any) -> list[ChildSpec]:
    return [ChildSpec(f"p{i}", ProbeAgent, **kw) for i in range(n)]


@pytest.fixture
async def make_runtime() -> AsyncIterator[Callable[..., Any]]:
    """Start runtimes for a test; every one is stopped (and its processes reaped) after it."""
    started: list[Runtime] = []

    async def make(
        root: SupervisorSpec, settings: RuntimeSettings = FAST
    ) -> tuple[Runtime, EventWaiter]:
        bus = EventBus(log=False)
        waiter = EventWaiter(bus)
        rt = Runtime(root, settings, events=bus)
        await rt.start()
        started.append(rt)
        return rt, waiter

    yield make
    for rt in reversed(started):
        await rt.stop()
