"""Forking safely: no process of a node outlives it, none blocks on a lock inherited held.

Real processes throughout: a runtime's fork server, agents forked from it, and the
children those agents fork for sync tools while their SQLite writer thread commits.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import sys
import uuid

import pytest
import structlog

from stalwart.runtime import ChildSpec, SupervisorSpec
from stalwart.runtime._channel import Channel, ChannelClosed, StreamBroken
from stalwart.runtime._child import SpawnRequest
from stalwart.runtime._forkserver import BOOT
from stalwart.runtime._fsclient import ForkServer
from stalwart.testing import ProbeAgent, eventually

from .conftest import NO_HANG_KILLS
from .forking_agent import ForkingAgent

MARK = "STALWART_FORK_TEST_MARK"


def marked(mark: str) -> set[int]:
    """Pids of the live processes whose environment carries ``MARK=mark`` (every process a
    runtime started inherits it), this one left out."""
    needle = f"{MARK}={mark}".encode()
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read()
        except OSError:  # gone meanwhile, or a zombie's (empty) or not ours to read
            continue
        if needle in env.split(b"\0"):
            found.add(int(entry.name))
    return found


async def exited(pid: int, timeout: float) -> None:
    """Return once ``pid`` (not necessarily a child of ours) has ended."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    loop.add_reader(fd, lambda: ended.done() or ended.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await ended
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _request(name: str) -> SpawnRequest:
    return SpawnRequest(
        name=name,
        incarnation=1,
        agent_ref=ChildSpec(name, ProbeAgent).ref,
        args=None,
        heartbeat_interval=0.2,
        start_timeout=30.0,
        default_call_timeout=5.0,
        max_frame_bytes=2**20,
    )


def agents(n: int, tmp_path: pathlib.Path) -> list[ChildSpec]:
    args = {"dir": str(tmp_path)}
    return [ChildSpec(f"f{i}", ForkingAgent, args=args, shutdown=5.0) for i in range(n)]


async def test_tool_children_forked_while_the_writer_commits_never_block(make_runtime, tmp_path):
    # Before the fork gate 1 fork in 300 to 2,500 made a child that blocked for ever on
    # SQLite's allocator mutex (held by the writer thread at the fork); 4 x 75 forks.
    rt, _events = await make_runtime(SupervisorSpec("root", agents(4, tmp_path)), NO_HANG_KILLS)
    calls = [
        rt.call(f"f{i}", {"op": "lookups", "n": 75, "timeout": 30}, timeout=600) for i in range(4)
    ]
    replies = await asyncio.gather(*calls)
    assert [r["results"] for r in replies] == [[42] * 75] * 4
    # and the agents themselves were forked from a single-threaded server
    assert rt.host.forkserver is not None
    assert rt.host.forkserver.threads_at_fork == 1


@pytest.mark.parametrize(
    ("module", "threads"),
    [
        # an app module that starts a thread at import: two threads across every fork
        ("tests.integration.runtime.threaded_module", 2),
        # a pool its library stops before every fork, as numpy's OpenBLAS does (the output
        # tier's model imports numpy): counted before the fork alone, every node with the
        # model installed warned at its first agent, for a fork with one thread
        ("tests.integration.runtime.pool_module", 1),
    ],
)
async def test_a_fork_server_says_when_a_preloaded_module_s_thread_runs_across_a_fork(
    module, threads
):
    fs = ForkServer(lambda pid, code: None, lambda: None, [module])
    with structlog.testing.capture_logs() as logs:
        await fs.start(60)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = await fs.spawn(_request("preloaded"), theirs, 60)
            os.kill(pid, signal.SIGKILL)
            assert fs.threads_at_fork == threads
        finally:
            theirs.close()
            ours.close()
            fs.close()
            await asyncio.to_thread(fs.wait_exited, 10.0)
            await fs.drain_output(5.0)
    warned = [e for e in logs if "threads at fork" in str(e.get("text", ""))]
    assert len(warned) == (1 if threads > 1 else 0), logs


async def test_no_process_outlives_agents_killed_while_their_tool_children_block(
    make_runtime, tmp_path, monkeypatch
):
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)  # inherited by the fork server, its agents, their children
    root = SupervisorSpec("root", agents(4, tmp_path), intensity=100, period=60)
    rt, events = await make_runtime(root, NO_HANG_KILLS)
    blocked: list[int] = []
    for rounds in range(3):  # kill, restart, kill again: agents forked many times
        pidfiles = [tmp_path / f"r{rounds}-f{i}.pid" for i in range(4)]
        for i, pidfile in enumerate(pidfiles):
            rt.cast(f"f{i}", {"op": "wait_forever", "pidfile": str(pidfile)})
        await eventually(lambda files=pidfiles: all(p.exists() for p in files), timeout=60)
        children = [int(p.read_text()) for p in pidfiles]
        blocked += children
        for i in range(4):
            agent = rt.whereis(f"f{i}")
            assert agent is not None
            os.kill(agent.pid, signal.SIGKILL)
        for child in children:  # each dies with its agent: none is left orphaned
            await exited(child, timeout=30)
        for i in range(4):
            await events.wait("agent_restarted", agent=f"f{i}", count=rounds + 1, timeout=60)
    assert len(set(blocked)) == 12
    await rt.stop()
    # the node is stopped: nothing it started, directly or not, is left
    await eventually(lambda: not marked(mark), timeout=30)


async def test_an_agent_spawned_for_a_request_nobody_waits_for_any_more_is_killed():
    exits: list[int] = []
    fs = ForkServer(lambda pid, code: exits.append(pid), lambda: None)
    await fs.start(60)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        spawning = asyncio.create_task(fs.spawn(_request("unclaimed"), theirs, 60))
        await asyncio.sleep(0)  # one step: the request is sent, the pid not yet read
        spawning.cancel()  # the requester gives up (a start timeout, a cancelled start)
        theirs.close()
        # The agent would start, say it is ready and beat on this channel, which the test
        # keeps open: left alone it lives on. Its channel's end (EOF: the agent's process,
        # the only other holder, is gone) is what the kill by pid must bring.
        channel = await Channel.open(ours, 2**20)
        frames: list[object] = []
        async with asyncio.timeout(60):
            while True:
                try:
                    frames.append(await channel.receive())
                except (ChannelClosed, StreamBroken):
                    break
        assert fs.killed_unclaimed == 1
        await eventually(lambda: not fs.disowned, timeout=30)  # its exit was reported
        assert not exits  # and passed to nobody: no one knew of it
    finally:
        ours.close()
        fs.close()
        await asyncio.to_thread(fs.wait_exited, 10.0)
        await fs.drain_output(5.0)


def test_a_fork_server_whose_node_is_gone_exits_before_importing_anything():
    # The node's pid is not this process's parent: the node died before the server asked
    # for its parent-death signal. It exits at once, without a control socket or imports.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", BOOT, "0", "", "1"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert b"stalwart" not in done.stderr  # -X importtime lists every module imported
