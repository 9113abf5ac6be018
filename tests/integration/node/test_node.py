"""The node's lifecycle as an orchestrator sees it: a real `stalwart run` process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap

import pytest

APP = textwrap.dedent(
    """
    from stalwart import ChildSpec, SupervisorSpec
    from stalwart.testing import ProbeAgent

    root = SupervisorSpec(
        "root", [ChildSpec("a", ProbeAgent), ChildSpec("b", ProbeAgent)], intensity=0
    )
    """
)


NODE_START_S = 60.0
"""Deadline for a node and its agents to come up: generous, since a node's fork server
preloads its modules (``FORK_SERVER_START_S``) and a loaded machine stretches that; a
healthy node takes about a second."""


@pytest.fixture
async def nodes():
    """Start ``stalwart run`` processes; each still running at teardown is killed, so a test
    that fails or times out leaves no node behind (and no port held)."""
    started: list[asyncio.subprocess.Process] = []

    async def start(tmp_path, app: str = "demo_app:root"):
        proc = await start_node(tmp_path, app)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def start_node(tmp_path, app: str = "demo_app:root"):
    (tmp_path / "demo_app.py").write_text(APP)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stalwart.cli",
        "run",
        app,
        "--http-port",  # any free port: another suite on this machine may hold 8470
        "0",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )
    return proc


async def read_events(
    proc, until: str, count: int = 1, timeout: float = NODE_START_S
) -> list[dict]:
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while sum(1 for e in seen if e.get("event") == until) < count:
            line = await proc.stderr.readline()
            assert line, f"node exited before {until!r}; saw {[e.get('event') for e in seen]}"
            try:
                seen.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return seen


async def wait_exit(proc, timeout: float = NODE_START_S) -> int:
    async with asyncio.timeout(timeout):
        rest = await proc.stderr.read()
        code = await proc.wait()
    read_events.last_tail = rest.decode(errors="replace")  # type: ignore[attr-defined]
    return code


async def test_root_giving_up_exits_non_zero(tmp_path, nodes):
    proc = await nodes(tmp_path)
    try:
        events = await read_events(proc, "agent_started", count=2)
        pid_a = next(e["pid"] for e in events if e.get("agent") == "a")
        os.kill(pid_a, signal.SIGKILL)  # intensity=0: the first restart is one too many
        assert await wait_exit(proc) == 1
        assert "supervisor_gave_up" in read_events.last_tail
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_stops_gracefully_with_exit_zero(tmp_path, nodes):
    proc = await nodes(tmp_path)
    try:
        events = await read_events(proc, "agent_started", count=2)
        pids = [e["pid"] for e in events if e.get("event") == "agent_started"]
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc) == 0
        tail = [json.loads(line) for line in read_events.last_tail.splitlines() if line.strip()]
        stopped = [e["agent"] for e in tail if e.get("event") == "agent_exited"]
        assert stopped == ["b", "a"]  # reverse start order
        assert all(e["reason"] == "shutdown" for e in tail if e.get("event") == "agent_exited")
        for pid in pids:  # no agent outlives its node
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigkill_of_the_node_takes_its_agents_with_it(tmp_path, nodes):
    proc = await nodes(tmp_path)
    events = await read_events(proc, "agent_started", count=2)
    pids = [e["pid"] for e in events if e.get("event") == "agent_started"]
    proc.kill()
    await proc.wait()

    async def gone(pid: int) -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            await asyncio.sleep(0.02)

    async with asyncio.timeout(5):
        await asyncio.gather(*(gone(p) for p in pids))


async def test_bad_app_reference_is_a_clear_error(tmp_path, nodes):
    proc = await nodes(tmp_path, app="demo_app:nothing_here")
    code = await wait_exit(proc)
    assert code == 2
    assert "has no attribute 'nothing_here'" in read_events.last_tail


async def test_node_run_in_process_returns_one_and_is_not_ready_when_root_gives_up():
    from stalwart import ChildSpec, Node, RuntimeSettings, SupervisorSpec
    from stalwart.observe import EventBus
    from stalwart.testing import ProbeAgent

    root = SupervisorSpec("root", [ChildSpec("a", ProbeAgent)], intensity=0)
    node = Node(root, RuntimeSettings(heartbeat_interval=0.2), events=EventBus(log=False))

    async def kill_when_ready() -> None:
        async with asyncio.timeout(NODE_START_S):
            while not node.ready:
                await asyncio.sleep(0.01)
        os.kill(node.runtime.whereis("a").pid, signal.SIGKILL)
        await asyncio.sleep(NODE_START_S + 30)  # the node must end before this does

    code = await asyncio.wait_for(node.run(until=kill_when_ready()), NODE_START_S + 15)
    assert code == 1
    assert not node.ready


async def test_a_running_node_labels_its_metrics_with_its_id():
    from stalwart import ChildSpec, Node, RuntimeSettings, SupervisorSpec
    from stalwart.observe import REGISTRY, EventBus
    from stalwart.testing import ProbeAgent

    node = Node(
        SupervisorSpec("root", [ChildSpec("a", ProbeAgent)]),
        RuntimeSettings(heartbeat_interval=0.2),
        node_id="node-7",
        events=EventBus(log=False),
    )

    async def look() -> None:
        async with asyncio.timeout(NODE_START_S):
            while not node.ready:
                await asyncio.sleep(0.01)
        samples = [
            s
            for m in REGISTRY.collect()
            if m.name == "stalwart_node_info"
            for s in m.samples
            if s.labels.get("node") == "node-7"
        ]
        assert samples and samples[0].value == 1

    assert await node.run(until=look()) == 0
