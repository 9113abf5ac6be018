"""OTP's child API, exit reasons and group restarts, on real processes."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from stalwart.errors import ChildError, NoProcess, StartError
from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.testing import ProbeAgent

from .conftest import probes


def log_lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def settled(sup) -> None:
    """Wait (bounded) until the supervisor has handled every exit queued so far."""
    async with asyncio.timeout(10):
        while not sup._queue.empty() or sup._lock.locked():
            await asyncio.sleep(0.01)


async def test_transient_child_raising_shutdown_is_not_restarted(make_runtime):
    spec = SupervisorSpec("root", [ChildSpec("t", ProbeAgent, restart="transient")])
    rt, events = await make_runtime(spec)
    with pytest.raises(NoProcess):
        await rt.call("t", {"op": "shutdown", "reason": "conversation over"}, timeout=5)
    exited = await events.wait("agent_exited", agent="t")
    assert exited["reason"] == "shutdown" and exited["exit_code"] == 0
    assert exited["detail"] == "conversation over"  # OTP's {shutdown, Reason}
    await settled(rt.root)
    assert rt.whereis("t") is None
    assert events.matching("agent_restarted") == []
    [row] = rt.root.which_children()
    assert (row.id, row.status, row.running) == ("t", "undefined", False)  # spec kept


async def test_permanent_child_raising_shutdown_is_restarted(make_runtime):
    rt, events = await make_runtime(SupervisorSpec("root", [ChildSpec("p", ProbeAgent)]))
    with pytest.raises(NoProcess):
        await rt.call("p", {"op": "shutdown"}, timeout=5)
    restarted = await events.wait("agent_restarted", agent="p")
    assert restarted["reason"] == "shutdown"


async def test_a_sigterm_from_outside_is_a_shutdown_exit(make_runtime):
    children = [
        ChildSpec("t", ProbeAgent, restart="transient"),
        ChildSpec("p", ProbeAgent, restart="permanent"),
    ]
    rt, events = await make_runtime(SupervisorSpec("root", children))
    os.kill(rt.whereis("t").pid, signal.SIGTERM)
    os.kill(rt.whereis("p").pid, signal.SIGTERM)
    await events.wait("agent_restarted", agent="p")
    await events.wait("agent_exited", agent="t")  # the two exits are reported in any order
    t_exit = events.matching("agent_exited", agent="t")[0]
    assert (t_exit["reason"], t_exit["signal"]) == ("shutdown", "SIGTERM")
    await settled(rt.root)
    assert rt.whereis("t") is None
    assert [e["agent"] for e in events.matching("agent_restarted")] == ["p"]


async def test_a_temporary_childs_spec_is_removed_when_it_ends_normally(make_runtime):
    spec = SupervisorSpec("root", [*probes(1), ChildSpec("tmp", ProbeAgent, restart="temporary")])
    rt, events = await make_runtime(spec)
    with pytest.raises(NoProcess):
        await rt.call("tmp", {"op": "shutdown"}, timeout=5)
    await events.wait("agent_exited", agent="tmp")
    await settled(rt.root)
    assert [c.id for c in rt.root.which_children()] == ["p0"]


async def test_one_for_all_with_a_failing_sibling_leaves_no_lone_survivor(make_runtime, tmp_path):
    log, fails = tmp_path / "log", tmp_path / "fails"
    children = [
        ChildSpec("a", ProbeAgent, args={"log": str(log)}),
        ChildSpec("b", ProbeAgent, args={"log": str(log), "fail_times_file": str(fails)}),
        ChildSpec("c", ProbeAgent, args={"log": str(log)}),
    ]
    rt, events = await make_runtime(SupervisorSpec("root", children, strategy="one_for_all"))
    fails.write_text("1")  # b's next start fails once
    os.kill(rt.whereis("c").pid, signal.SIGKILL)
    await events.wait("agent_restarted", agent="c")
    # a (restarted first) was stopped again when b failed: it never ran without b;
    # the retry restarted the whole group, in order
    assert log_lines(log)[3:] == [
        "stop b", "stop a",          # c died: the others stop, in reverse
        "start a",                   # b fails to start here
        "stop a",                    # ...so a stops: no lone survivor
        "start a", "start b", "start c",  # the retry, as a group
    ]  # fmt: skip
    assert len(events.matching("agent_restart_failed", agent="b")) == 1
    assert {r.status for r in rt.root.which_children()} == {"running"}


async def test_a_group_that_cannot_restart_gives_up_with_nothing_left_running(
    make_runtime, tmp_path
):
    fails = tmp_path / "fails"
    children = [
        ChildSpec("a", ProbeAgent),
        ChildSpec("b", ProbeAgent, args={"fail_times_file": str(fails)}),
    ]
    spec = SupervisorSpec("root", children, strategy="one_for_all", intensity=3, period=60)
    rt, events = await make_runtime(spec)
    fails.write_text("100")
    os.kill(rt.whereis("a").pid, signal.SIGKILL)
    await asyncio.wait_for(rt.failed, 30)
    # the first restart and each of its retries cost one: 3 allowed, the 4th gives up
    assert len(events.matching("agent_restart_failed", agent="b")) == 3
    assert rt.whereis("a") is None and rt.whereis("b") is None
    assert not [p for p in rt.host.processes() if p.exit is None]


async def test_start_terminate_restart_delete_child(make_runtime):
    rt, events = await make_runtime(SupervisorSpec("root", probes(1)))
    sup = rt.root
    proc = await sup.start_child(ChildSpec("extra", ProbeAgent))
    assert (await rt.call("extra", {"op": "echo"}))["pid"] == proc.pid
    assert sup.count_children().active == 2

    with pytest.raises(ChildError) as err:
        await sup.start_child(ChildSpec("extra", ProbeAgent))
    assert err.value.reason == "already_started"
    with pytest.raises(ChildError) as err:
        await sup.restart_child("extra")
    assert err.value.reason == "running"
    with pytest.raises(ChildError) as err:
        await sup.delete_child("extra")
    assert err.value.reason == "running"

    await sup.terminate_child("extra")
    assert rt.whereis("extra") is None
    exited = events.matching("agent_exited", agent="extra")[0]
    assert exited["reason"] == "shutdown"
    await settled(sup)
    assert events.matching("agent_restarted") == []  # an operator's stop is not a crash
    with pytest.raises(ChildError) as err:
        await sup.start_child(ChildSpec("extra", ProbeAgent))
    assert err.value.reason == "already_present"

    again = await sup.restart_child("extra")
    assert again.pid != proc.pid and rt.whereis("extra").pid == again.pid
    await sup.terminate_child("extra")
    await sup.delete_child("extra")
    assert [c.id for c in sup.which_children()] == ["p0"]
    for call in (sup.terminate_child, sup.restart_child, sup.delete_child):
        with pytest.raises(ChildError) as err:
            await call("extra")
        assert err.value.reason == "not_found"


async def test_start_child_that_fails_keeps_nothing(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)))
    with pytest.raises(StartError, match="told to fail in init"):
        await rt.root.start_child(ChildSpec("bad", ProbeAgent, args={"fail_init": True}))
    assert [c.id for c in rt.root.which_children()] == ["p0"]


async def test_terminating_a_temporary_child_deletes_its_spec(make_runtime):
    spec = SupervisorSpec("root", [ChildSpec("tmp", ProbeAgent, restart="temporary")])
    rt, _ = await make_runtime(spec)
    await rt.root.terminate_child("tmp")
    assert rt.root.which_children() == []
    with pytest.raises(ChildError) as err:
        await rt.root.restart_child("tmp")
    assert err.value.reason == "not_found"


async def test_a_supervisor_that_gave_up_refuses_child_requests(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1), intensity=0))
    os.kill(rt.whereis("p0").pid, signal.SIGKILL)
    await asyncio.wait_for(rt.failed, 10)
    with pytest.raises(ChildError) as err:
        await rt.root.restart_child("p0")
    assert err.value.reason == "not_running"
