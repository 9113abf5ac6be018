"""PA-3: message passing only, a deadline on every call; bad input refused clearly."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import time

import pytest

from stalwart.errors import CallTimeout, InvalidMessage, NoProcess, RemoteError
from stalwart.runtime import SupervisorSpec

from .conftest import probes


async def test_slow_target_times_out_at_the_deadline(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)))
    started = time.monotonic()
    with pytest.raises(CallTimeout, match=r"no reply within 0\.3 s"):
        await rt.call("p0", {"op": "sleep", "s": 5}, timeout=0.3)
    took = time.monotonic() - started
    # not before the deadline, and ended by it, not by the handler's 5 s: the latency past
    # the deadline is not bounded here (a loaded machine delays any wake-up)
    assert 0.3 <= took < 5
    # the agent cancelled the abandoned handler and answers the next call at once
    assert (await rt.call("p0", {"op": "echo", "value": 2}, timeout=1))["echo"] == 2


async def test_call_without_timeout_uses_the_configured_default(make_runtime):
    from stalwart.config import RuntimeSettings, Timeouts

    settings = RuntimeSettings(heartbeat_interval=0.2, timeouts=Timeouts(agent_call=0.25))
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)), settings)
    started = time.monotonic()
    with pytest.raises(CallTimeout):
        await rt.call("p0", {"op": "sleep", "s": 5})
    assert 0.25 <= time.monotonic() - started < 5  # the default, not the handler's 5 s


async def test_dead_target_fails_immediately(make_runtime):
    rt, events = await make_runtime(SupervisorSpec("root", probes(1, restart="temporary")))
    os.kill(rt.whereis("p0").pid, signal.SIGKILL)
    await events.wait("agent_exited", agent="p0")
    started = time.monotonic()
    with pytest.raises(NoProcess, match="no running agent named 'p0'"):
        await rt.call("p0", {"op": "echo"}, timeout=5)
    assert time.monotonic() - started < 5  # an answer, not the deadline's passing


async def test_target_dying_mid_call_fails_the_call_at_once(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)))
    pid = rt.whereis("p0").pid
    call = asyncio.create_task(rt.call("p0", {"op": "sleep", "s": 30}, timeout=30))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(NoProcess, match="exited before replying"):
        await call
    assert time.monotonic() - started < 30  # at its death, not at the call's deadline


async def test_unknown_name_fails_immediately(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)))
    with pytest.raises(NoProcess, match="nobody"):
        await rt.call("nobody", {"op": "echo"}, timeout=5)


async def test_stale_ref_fails_after_restart(make_runtime):
    rt, events = await make_runtime(SupervisorSpec("root", probes(1)))
    ref = rt.whereis("p0")
    assert (await rt.call(ref, {"op": "echo", "value": 1}))["echo"] == 1
    os.kill(ref.pid, signal.SIGKILL)
    await events.wait("agent_restarted", agent="p0")
    with pytest.raises(NoProcess, match="incarnation 1 has exited"):
        await rt.call(ref, {"op": "echo"}, timeout=1)
    assert (await rt.call("p0", {"op": "echo"}))["incarnation"] == 2


async def test_late_reply_is_dropped_and_counted(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)))
    # `block` holds the agent's loop past the caller's deadline, so the reply is sent late
    with pytest.raises(CallTimeout):
        await rt.call("p0", {"op": "block", "s": 0.15}, timeout=0.05)
    # the next call's reply comes after the late one on the same channel
    assert (await rt.call("p0", {"op": "echo", "value": 7}, timeout=2))["echo"] == 7
    assert rt.host.late_replies == 1


async def test_remote_exception_comes_back_and_the_agent_keeps_running(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)))
    pid = rt.whereis("p0").pid
    with pytest.raises(RemoteError, match="ValueError: boom") as info:
        await rt.call("p0", {"op": "raise", "message": "boom"}, timeout=2)
    assert info.value.remote_type == "ValueError"
    assert (await rt.call("p0", {"op": "echo"}))["pid"] == pid


async def test_agent_to_agent_call_and_cast_through_the_node(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(2)))
    reply = await rt.call(
        "p0", {"op": "call", "target": "p1", "payload": {"op": "echo", "value": "hi"}}, timeout=2
    )
    assert reply["echo"] == "hi" and reply["pid"] == rt.whereis("p1").pid
    await rt.call("p0", {"op": "cast", "target": "p1", "payload": {"note": 1}}, timeout=2)
    async with asyncio.timeout(2):
        while not (await rt.call("p1", {"op": "casts"}))["casts"]:
            await asyncio.sleep(0.01)
    assert (await rt.call("p1", {"op": "casts"}))["casts"] == [{"note": 1}]


async def test_agent_to_agent_timeout_and_no_process(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(2)))
    slow = {"op": "call", "target": "p1", "payload": {"op": "sleep", "s": 5}, "timeout": 0.2}
    started = time.monotonic()
    with pytest.raises(RemoteError, match="CallTimeout"):
        await rt.call("p0", slow, timeout=2)
    assert time.monotonic() - started < 2  # p0's own 0.2 s deadline, not the caller's 2 s
    missing = {"op": "call", "target": "ghost", "payload": {}, "timeout": 2}
    with pytest.raises(RemoteError, match="NoProcess"):
        await rt.call("p0", missing, timeout=2)


async def test_deadline_propagates_to_nested_calls(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(2)))
    # p0's own timeout for the nested call is 10 s, but it is handling a call with 0.3 s left
    nested = {"op": "call", "target": "p1", "payload": {"op": "sleep", "s": 5}, "timeout": 10}
    started = time.monotonic()
    with pytest.raises(CallTimeout):
        await rt.call("p0", nested, timeout=0.3)
    assert time.monotonic() - started < 5
    # p1 was not left working on its 5 s sleep: it answers before that sleep would end
    # (bounds with room for a loaded machine; the propagation is what is asserted)
    assert (await rt.call("p1", {"op": "echo", "value": 1}, timeout=4))["echo"] == 1


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"when": datetime.datetime(2026, 1, 1)}, r"payload\['when'\] is a datetime"),
        ({1: "int key"}, "has a key 1 of type int"),
        ({"x": float("nan")}, "JSON cannot represent"),
        ({"b": b"bytes"}, "is a bytes"),
        ({"s": {1, 2}}, "is a set"),
    ],
)
async def test_non_json_payload_is_refused_before_sending(make_runtime, payload, message):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)))
    with pytest.raises(InvalidMessage, match=message):
        await rt.call("p0", payload, timeout=1)
    with pytest.raises(InvalidMessage):
        rt.cast("p0", payload)
    assert (await rt.call("p0", {"op": "echo"}))["echo"] is None


async def test_too_deep_payload_is_refused(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)))
    deep: list = []
    cursor = deep
    for _ in range(100):
        cursor.append([])
        cursor = cursor[0]
    with pytest.raises(InvalidMessage, match="nested deeper"):
        await rt.call("p0", deep, timeout=1)


async def test_non_json_reply_is_a_clear_error(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(1)))
    with pytest.raises(InvalidMessage, match=r"reply\['when'\] is a module"):
        await rt.call("p0", {"op": "bad_reply"}, timeout=2)


@pytest.mark.parametrize("op", ["garbage", "unknown_type"])
async def test_malformed_frame_is_dropped_and_the_stream_goes_on(make_runtime, op):
    rt, events = await make_runtime(SupervisorSpec("root", probes(1)))
    pid = rt.whereis("p0").pid
    assert (await rt.call("p0", {"op": op}, timeout=2))[op] is True
    bad = await events.wait("malformed_frame", agent="p0")
    assert "frame" in bad["error"] or "message type" in bad["error"]
    assert rt.host.malformed_frames == 1
    assert (await rt.call("p0", {"op": "echo"}))["pid"] == pid  # same process, still fine


async def test_poisoned_stream_kills_and_restarts_the_agent(make_runtime):
    rt, events = await make_runtime(SupervisorSpec("root", probes(2)))
    with pytest.raises(NoProcess):
        await rt.call("p0", {"op": "oversize"}, timeout=5)
    error = await events.wait("protocol_error", agent="p0")
    assert "exceeds max_frame_bytes" in error["error"]
    restarted = await events.wait("agent_restarted", agent="p0")
    assert restarted["reason"] == "protocol_error"
    assert (await rt.call("p1", {"op": "echo", "value": 1}))["echo"] == 1


async def test_a_handler_whose_own_call_times_out_replies_with_that_error(make_runtime):
    """CallTimeout is also a builtin TimeoutError; the callee still tells a timeout of its own
    call (a RemoteError naming CallTimeout, at once) from its caller's deadline passing."""
    rt, _ = await make_runtime(SupervisorSpec("root", probes(2)))
    started = time.monotonic()
    inner = {"target": "p1", "payload": {"op": "sleep", "s": 5}, "timeout": 0.2}
    with pytest.raises(RemoteError, match="CallTimeout") as caught:
        await rt.call("p0", {"op": "call", **inner}, timeout=10)
    assert caught.value.remote_type == "CallTimeout"
    assert time.monotonic() - started < 5  # answered, not left to the caller's 10 s
