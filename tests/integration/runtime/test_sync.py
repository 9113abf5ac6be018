"""``Runtime.sync``: a barrier through an agent's channel. When it returns, the node has
delivered every event the agent published before it read the request; an agent whose
handler is busy still answers at once, and a blocked one makes it time out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import select
import time

import pytest
from tests.integration.runtime.publisher_agent import Publisher

from stalwart.config import RuntimeSettings
from stalwart.errors import CallTimeout, NoProcess
from stalwart.observe import Event
from stalwart.runtime import ChildSpec, SupervisorSpec

pytestmark = pytest.mark.timeout(60)


def _wait_blocking(fd: int, seconds: float) -> bytes:
    """Read the agent's signal with the node's event loop held: the loop cannot read the
    agent's channel meanwhile (a node too busy to keep up with the agent)."""
    ready, _, _ = select.select([fd], [], [], seconds)
    assert ready, f"the agent did not signal within {seconds} s"
    return os.read(fd, 64)


async def test_sync_returns_after_every_event_published_before_it(
    make_runtime, tmp_path: pathlib.Path
) -> None:
    rt, _ = await make_runtime(SupervisorSpec("root", [ChildSpec("pub", Publisher)]))
    got: list[int] = []

    def on_event(event: Event) -> None:
        if event.name == "task.piece":
            got.append(int(event.fields["n"]))

    sub = rt.events.subscribe(on_event)
    fifo = tmp_path / "signal"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        rt.cast("pub", {"events": 200, "fifo": str(fifo)})
        assert _wait_blocking(fd, 20.0) == b"published"
        # the agent has published all 200 (and then signalled by another path), but this
        # node has not read its channel yet: none of them is delivered
        assert got == []
        await rt.sync("pub", timeout=10.0)
        assert got == list(range(200))  # all of them, in order
    finally:
        os.close(fd)
        sub.close()


async def test_sync_is_answered_by_a_busy_agent_and_times_out_on_a_blocked_one(
    make_runtime, tmp_path: pathlib.Path
) -> None:
    # not declared hung while it blocks (the watchdog would kill it after 0.3 s)
    settings = RuntimeSettings(heartbeat_interval=0.2, hang_after_missed=100, start_timeout=30.0)
    rt, _ = await make_runtime(SupervisorSpec("root", [ChildSpec("pub", Publisher)]), settings)
    busy = asyncio.create_task(rt.call("pub", {"sleep": 5.0}, timeout=10.0))
    started = time.monotonic()
    await rt.sync("pub", timeout=4.0)  # its reader answers; its handler sleeps on
    assert time.monotonic() - started < 4.0 and not busy.done()
    busy.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await busy

    fifo = tmp_path / "signal"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        blocked = asyncio.create_task(
            rt.call("pub", {"block": 2.0, "fifo": str(fifo)}, timeout=10.0)
        )
        await asyncio.to_thread(_wait_blocking, fd, 20.0)  # its loop is blocked from now
        with pytest.raises(CallTimeout, match=r"did not answer a sync within 0\.5 s"):
            await rt.sync("pub", timeout=0.5)
        assert await blocked == "blocked"
    finally:
        os.close(fd)
    await rt.sync("pub", timeout=4.0)  # unblocked: it answers again
    with pytest.raises(NoProcess):
        await rt.sync("nobody", timeout=1.0)
