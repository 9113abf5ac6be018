"""A budgeted agent SIGKILLed mid model call: the node charges the call's worst case and
ends its reservation at once, instead of leaving it to hold room for an hour."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from examples.helpdesk.tickets import generate

from stalwart.guard import SpendLedger
from stalwart.node import app_node
from stalwart.observe import EventBus
from stalwart.testing import EventWaiter, eventually

pytestmark = pytest.mark.timeout(90)


async def test_a_call_killed_in_flight_is_charged_and_stops_holding_room(tmp_path):
    store = f"sqlite:///{tmp_path}/a.db"
    events = EventBus(log=False)
    node, app = app_node("examples.helpdesk.app:app", store=store, events=events)
    ledger = SpendLedger(store)
    seen: dict[str, object] = {}

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:
                await asyncio.sleep(0.01)
        assert app.sim is not None
        for model in ("strong", "weak"):  # every model of the chain hangs: calls stay open
            app.sim.world.set_fault(model, hang=True, hang_s=60)
        ticket = next(t for t in generate(20, seed=9, injection_rate=0.0) if "refund" in t["text"])
        task_id = await app.tasks.submit("triage", ticket, task_id="killed-mid-call")
        # the resolver has reserved its call's worst case and is waiting for the model
        await eventually(lambda: ledger.reserved("agent", "resolver") > 0, timeout=30)
        held = ledger.reserved("agent", "resolver")
        spent_before = ledger.spent("agent", "resolver")
        # calls made from now on get answers; the held one hangs until its caller dies
        app.sim.world.clear_faults()
        ref = node.runtime.whereis("resolver")
        assert ref is not None
        waiter = EventWaiter(events)
        os.kill(ref.pid, signal.SIGKILL)
        charged = await waiter.wait("budget_dead_calls_charged", timeout=15)
        assert len(events.recent("budget_dead_calls_charged")) == 1
        seen.update(charged.fields)
        assert charged.fields["pid"] == ref.pid and charged.fields["agent"] == "resolver"
        assert charged.fields["calls"] == 1
        # the event reports whole micro-dollars (round(usd, 6))
        assert charged.fields["charged_usd"] == pytest.approx(held, abs=1e-6)
        # no room is held any more, and the worst case counts as spent (fail closed)
        assert ledger.reserved("agent", "resolver") == 0
        assert ledger.spent("agent", "resolver") == pytest.approx(spent_before + held)
        # the restarted resolver resumes the task and completes it
        record = await app.tasks.wait(task_id, timeout=40)
        assert record.status == "succeeded", record.outcome
        seen["status"] = record.status

    try:
        assert await node.run(until=work()) == 0
    finally:
        ledger.close()
    assert seen["status"] == "succeeded"
