from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from stalwart.config import RuntimeSettings
from stalwart.observe import EventBus
from stalwart.runtime import ChildSpec, Runtime, SupervisorSpec
from stalwart.testing import EventWaiter, ProbeAgent

# start_timeout is the default's 30 s: the fork server costs about 1 s of CPU to boot
# (imports, the redactor's lists), which took over 10 s of wall time at load average 15
# on 2 cores. No test here waits for a start to time out.
FAST = RuntimeSettings(heartbeat_interval=0.2, start_timeout=30.0)
# For tests whose subject is not hang detection: FAST's heartbeats (and memory checks), but
# a hang threshold (10 s) no healthy agent reaches. FAST's is 0.3 s, less than an agent's
# loop can spend off the CPU at a load average of 25-30 on 2 cores: the watchdog then kills
# it as hung (loop lag 0.31 s), a second failure beside the one the test makes.
NO_HANG_KILLS = RuntimeSettings(heartbeat_interval=0.2, hang_after_missed=50.0, start_timeout=30.0)


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
