"""Run the support app on a real node and SIGKILL its agent process at step boundaries.

Used by ``tests/integration/adapters/test_langgraph.py`` and
``bench/adapter_langgraph.py``. Tickets run one at a time. For a ticket picked to be
killed, the harness makes the simulated model hang the task's request after its first
``k`` (``k`` drawn at random among its calls; the fault is armed before the task is
submitted, with ``skip=k``, so no request can slip past it), and SIGKILLs the agent
process once that request has arrived: every call before it was answered *and
journaled* (a task awaits the journal before its next call), so the kill lands exactly
on a step boundary. The restarted process resumes the task from its
journal.

Counted at the simulated provider: model requests it *answered* (hung requests never
are), and deliveries per idempotency key of the payment service.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import time
from typing import Any

from stalwart import RuntimeSettings
from stalwart.node import app_node
from stalwart.observe import EventBus

APP = "examples.langgraph_support.app:app"
AGENT = "support"
MODEL = "strong"  # the first model of the app's chain: where requests go


@dataclasses.dataclass
class ChaosRun:
    results: dict[str, dict[str, Any]]
    """Task id -> its outcome."""
    answered_model_calls: int
    kills: int
    duplicate_refunds: int
    refunds: int
    seconds: float


async def run_tickets(
    store: str, tickets: list[dict[str, Any]], *, kill_share: float, seed: int
) -> ChaosRun:
    """Run ``tickets`` one at a time; kill the agent in about ``kill_share`` of them."""
    events = EventBus(log=False)
    failures: list[str] = []
    events.subscribe(
        lambda e: failures.append(str(e.fields)) if e.name == "node_start_failed" else None
    )
    node, service = app_node(
        APP,
        store=store,
        events=events,
        # a busy machine (CI, other suites) can take more than the default 10 s to fork
        settings=RuntimeSettings(heartbeat_interval=0.5, start_timeout=60.0),
    )
    rng = random.Random(seed)
    facts: dict[str, Any] = {}

    async def work() -> None:
        async with asyncio.timeout(60):
            while not node.ready:  # noqa: ASYNC110 (as the other tests wait for a node)
                await asyncio.sleep(0.01)
        assert service.tasks is not None and service.sim is not None
        world = service.sim.world
        # the tools take a moment, as real services do: a kill can land between calls
        world.set_fault("tool:orders", latency_ms=30)
        world.set_fault("tool:payments", latency_ms=30)
        results: dict[str, dict[str, Any]] = {}
        kills = 0
        started = time.monotonic()
        for n, ticket in enumerate(tickets):
            task_id = f"lg-{seed}-{n}"
            before = world.stats[f"{MODEL}:requests"]
            after_calls = rng.randint(0, 2) if rng.random() < kill_share else None
            if after_calls is not None:  # armed first: it cannot miss the request it is for
                world.set_fault(MODEL, hang=True, hang_s=60, skip=after_calls)
            await service.tasks.submit(AGENT, ticket, task_id=task_id, seed=seed)
            if after_calls is not None and await _kill_at(node, world, before + after_calls):
                kills += 1
            record = await service.tasks.wait(task_id, timeout=60)
            assert record.status == "succeeded", (task_id, record.status, record.outcome)
            results[task_id] = record.outcome
        report = world.tools.report()
        facts["run"] = ChaosRun(
            results=results,
            answered_model_calls=world.next_id() - 1,  # ids go to answered requests only
            kills=kills,
            duplicate_refunds=int(report["duplicates"]["payments"]),
            refunds=len(report["deliveries"]["payments"]),
            seconds=time.monotonic() - started,
        )

    code = await node.run(until=work())
    if code != 0:
        raise RuntimeError(f"the node exited {code}: {failures}")
    run: ChaosRun = facts["run"]
    return run


async def _kill_at(node: Any, world: Any, arrivals: int) -> bool:
    """SIGKILL the agent process once model request number ``arrivals + 1`` (armed to
    hang) has arrived; False if the task ended first (then nothing is killed)."""
    deadline = time.monotonic() + 20
    key = f"{MODEL}:requests"
    try:
        while world.stats[key] <= arrivals:  # the request that hangs
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.001)
    finally:
        # a request that arrived holds its hang; later ones (after the restart) do not
        world.clear_faults(MODEL)
    ref = node.runtime.whereis(AGENT)
    if ref is None:
        return False
    os.kill(ref.pid, signal.SIGKILL)
    return True
