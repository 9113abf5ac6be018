"""Run the Pydantic AI support example on a real node, SIGKILLing its agent process at
chosen points; shared by the integration test and bench/adapter_pydantic_ai.py.

Kills land at step boundaries, from inside the simulated world (the node runs it in
this process): on the N-th model request the sim receives (the agent waits for that
answer, everything before it is journaled), and inside a refund just after the
payment service delivered it (the ledger saw "started", never "completed"). Tickets
run one at a time, so each model-request kill leaves exactly one request unanswered:
model calls re-made after a kill = requests at the provider - the uninterrupted run's
requests - those unanswered ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections.abc import Collection
from pathlib import Path
from typing import Any

from stalwart import RuntimeSettings
from stalwart.node import app_node
from stalwart.observe import EventBus

APP = "examples.pydantic_ai_support.app:app"


@dataclasses.dataclass
class SupportRun:
    results: dict[str, Any]
    model_requests: int
    kills: int
    model_kills: int
    deliveries: dict[str, int]
    duplicates: int
    payment_requests: int


async def run_support(
    store: Path,
    tickets: list[dict[str, Any]],
    *,
    kill_at_model: Collection[int] = (),
    kill_at_refund: Collection[int] = (),
    timeout: float = 60.0,
) -> SupportRun:
    events = EventBus(log=False)
    node, service = app_node(
        APP,
        store=f"sqlite:///{store}",
        events=events,
        settings=RuntimeSettings(heartbeat_interval=0.5),
    )
    seen = {"model": 0, "refund": 0, "kills": 0, "model_kills": 0}
    out: dict[str, Any] = {}

    def kill() -> None:
        ref = node.runtime.whereis("support")
        assert ref is not None, "the support agent is not running"
        os.kill(ref.pid, signal.SIGKILL)
        seen["kills"] += 1

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        assert service.sim is not None
        world = service.sim.world
        reply, refund = world.brain.reply, world.tools.refund

        def killing_reply(messages: Any, tools: Any, persona: str) -> Any:
            seen["model"] += 1
            if seen["model"] in kill_at_model:
                kill()  # the agent waits for this answer: it never gets it
                seen["model_kills"] += 1
            return reply(messages, tools, persona)

        def killing_refund(key: str | None, body: dict[str, Any]) -> dict[str, Any]:
            result = refund(key, body)  # delivered
            seen["refund"] += 1
            if seen["refund"] in kill_at_refund:
                kill()  # ... and the agent dies before it hears so
            return result

        world.brain.reply = killing_reply  # type: ignore[method-assign]
        world.tools.refund = killing_refund  # type: ignore[method-assign]
        for ticket in tickets:  # one at a time: a kill interrupts exactly one task
            task_id = await service.tasks.submit("support", ticket, task_id=ticket["id"])
            record = await service.tasks.wait(task_id, timeout=timeout)
            assert record.status == "succeeded", (task_id, record.status, record.outcome)
            out[task_id] = record.outcome
        out["__stats__"] = dict(world.stats)
        out["__report__"] = world.tools.report()

    until = work()
    code = await node.run(until=until)
    until.close()  # a node that failed to start never awaited it
    failed = [dict(e.fields) for e in events.recent() if e.name == "node_start_failed"]
    assert code == 0, f"the node exited {code}: {failed or 'see its log'}"
    stats, report = out.pop("__stats__"), out.pop("__report__")
    requests = sum(v for k, v in stats.items() if k.endswith(":requests"))
    return SupportRun(
        results=out,
        model_requests=requests,
        kills=seen["kills"],
        model_kills=seen["model_kills"],
        deliveries=dict(report["deliveries"]["payments"]),
        duplicates=sum(report["duplicates"].values()),
        payment_requests=int(report["requests"].get("payments", 0)),
    )
