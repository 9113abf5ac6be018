"""The dynamic supervisor (see stalwart/runtime/_dynamic.py), on real processes."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from stalwart import Runtime
from stalwart.durable import open_store
from stalwart.errors import ChildError, ConfigError, NoProcess
from stalwart.observe import EventBus
from stalwart.runtime import ChildSpec, DynamicSupervisorSpec, SupervisorSpec
from stalwart.testing import EventWaiter, FakeClock, ProbeAgent

from .conftest import FAST
from .session_agent import JournaledSession


def sessions(**kw) -> SupervisorSpec:
    template = ChildSpec("session", ProbeAgent, restart=kw.pop("restart", "permanent"))
    return SupervisorSpec("root", [DynamicSupervisorSpec("sessions", template, **kw)])


async def test_instances_start_by_key_and_answer_under_their_name(make_runtime):
    rt, _ = await make_runtime(sessions())
    dyn = rt.dynamic_supervisor("sessions")
    assert dyn.which_children() == []
    ref = await dyn.start_instance("alice", {"log": None})
    await dyn.start_instance("bob")
    assert ref.name == "session:alice"
    assert (await dyn.call("alice", {"op": "echo", "value": 1}))["pid"] == ref.pid
    assert (await rt.call("session:bob", {"op": "echo"}))["incarnation"] == 1
    assert dyn.count_children().active == 2
    with pytest.raises(ChildError) as err:
        await dyn.start_instance("alice")
    assert err.value.reason == "already_started"
    with pytest.raises(NoProcess, match="start_instance first"):
        await dyn.call("carol", {"op": "echo"})
    with pytest.raises(ConfigError, match="instance key"):
        await dyn.start_instance("a/b")


async def test_max_children_refuses_one_more(make_runtime):
    rt, _ = await make_runtime(sessions(max_children=2))
    dyn = rt.dynamic_supervisor("sessions")
    await dyn.start_instance("a")
    await dyn.start_instance("b")
    with pytest.raises(ChildError) as err:
        await dyn.start_instance("c")
    assert err.value.reason == "max_children"
    await dyn.terminate_child("session:a")  # removed, as OTP removes dynamic children
    assert [c.id for c in dyn.which_children()] == ["session:b"]
    await dyn.start_instance("c")


async def test_a_crashed_instance_is_restarted_alone(make_runtime):
    rt, events = await make_runtime(sessions())
    dyn = rt.dynamic_supervisor("sessions")
    a = await dyn.start_instance("a")
    b = await dyn.start_instance("b")
    os.kill(a.pid, signal.SIGKILL)
    await events.wait("agent_restarted", agent="session:a", supervisor="sessions")
    assert rt.whereis("session:a").pid != a.pid
    assert rt.whereis("session:b").pid == b.pid


async def test_an_instance_that_ends_normally_is_removed(make_runtime):
    rt, events = await make_runtime(sessions(restart="transient"))
    dyn = rt.dynamic_supervisor("sessions")
    await dyn.start_instance("a")
    with pytest.raises(NoProcess):
        await dyn.call("a", {"op": "shutdown", "reason": "done"})
    await events.wait("agent_exited", agent="session:a", reason="shutdown")
    async with asyncio.timeout(10):
        while dyn.which_children():
            await asyncio.sleep(0.01)
    assert events.matching("agent_restarted") == []


async def test_idle_instances_stop_and_resume_on_their_next_message():
    clock = FakeClock()
    bus = EventBus(log=False)
    waiter = EventWaiter(bus)
    rt = Runtime(sessions(idle_timeout=60.0), FAST, events=bus, clock=clock)
    await rt.start()
    try:
        dyn = rt.dynamic_supervisor("sessions")
        first = await dyn.start_instance("a", {"log": None})
        await dyn.start_instance("b")
        clock.advance(30)
        await dyn.call("b", {"op": "echo"})  # b was active 30 s ago; a was not
        clock.advance(30)
        assert await dyn.stop_idle() == ["session:a"]
        exited = await waiter.wait("agent_exited", agent="session:a")
        assert exited["reason"] == "shutdown"
        assert rt.whereis("session:a") is None and dyn.idle_children() == ["session:a"]
        assert events_restarted(waiter) == []  # an idle stop is not a crash

        again = await dyn.call("a", {"op": "echo"})  # resumes it
        assert again["pid"] != first.pid and again["incarnation"] == 2
        assert waiter.matching("instance_resumed", child="session:a")
        assert dyn.count_children().active == 2
    finally:
        await rt.stop()


async def test_a_session_kept_in_the_journal_survives_its_idle_stop(tmp_path):
    """One process per session, its history in the journal: stopped when idle, the
    session's next message starts a new process that answers with the whole history."""
    store = f"sqlite:///{tmp_path}/sessions.db"
    template = ChildSpec("session", JournaledSession, args={"store": store})
    spec = SupervisorSpec(
        "root", [DynamicSupervisorSpec("sessions", template, idle_timeout=60.0, max_children=10)]
    )
    clock = FakeClock()
    bus = EventBus(log=False)
    waiter = EventWaiter(bus)
    rt = Runtime(spec, FAST, events=bus, clock=clock)
    await rt.start()
    try:
        dyn = rt.dynamic_supervisor("sessions")
        await dyn.start_instance("ann")
        await dyn.start_instance("bob")
        first = await dyn.call("ann", {"text": "my order is late"}, timeout=10)
        await dyn.call("bob", {"text": "hello"}, timeout=10)
        assert (await dyn.call("ann", {"text": "order 12"}, timeout=10))["history"] == [
            "my order is late", "order 12",
        ]  # fmt: skip
        clock.advance(60)
        assert sorted(await dyn.stop_idle()) == ["session:ann", "session:bob"]
        await waiter.wait("agent_exited", agent="session:ann", reason="shutdown")
        assert rt.whereis("session:ann") is None  # no process holds the session now
        again = await dyn.call("ann", {"text": "any news?"}, timeout=10)  # resumes it
        assert again["pid"] != first["pid"]
        assert again["history"] == ["my order is late", "order 12", "any news?"]
        assert (await dyn.call("bob", {"text": "bye"}, timeout=10))["history"] == ["hello", "bye"]
    finally:
        await rt.stop()
    db = await open_store(store)
    try:
        journal = await db.load_journal("session-session-ann")
        assert [e.value for e in journal.entries] == ["my order is late", "order 12", "any news?"]
    finally:
        await db.close()


async def test_the_idle_sweeper_runs_on_the_injected_clock():
    clock = FakeClock()
    bus = EventBus(log=False)
    waiter = EventWaiter(bus)
    rt = Runtime(sessions(idle_timeout=8.0), FAST, events=bus, clock=clock)
    await rt.start()
    try:
        dyn = rt.dynamic_supervisor("sessions")
        await dyn.start_instance("a")
        clock.advance(8.0)  # wakes the sweeper, which finds "a" idle
        stopped = await waiter.wait("instance_idle_stopped", timeout=10)
        assert stopped["child"] == "session:a"
    finally:
        await rt.stop()


def events_restarted(waiter: EventWaiter) -> list:
    return waiter.matching("agent_restarted")


def test_dynamic_supervisor_spec_rejects_bad_values_by_name():
    template = ChildSpec("s", ProbeAgent)
    for kwargs, message in [
        ({"max_children": 0}, "max_children"),
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"intensity": -1}, "intensity"),
        ({"child": "nope"}, "child must be a ChildSpec"),
    ]:
        with pytest.raises(ConfigError, match=message):
            DynamicSupervisorSpec(**{"id": "d", "child": template, **kwargs})
