"""PA-1: every agent is its own process; one crash affects no other."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time

from stalwart.runtime import SupervisorSpec

from .conftest import probes

DEADLINE = 2.0


async def test_each_agent_has_its_own_process(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(4)))
    pids = {(await rt.call(f"p{i}", {"op": "echo"}))["pid"] for i in range(4)}
    assert len(pids) == 4
    assert os.getpid() not in pids


async def test_sigkill_of_one_agent_under_load_affects_no_other(make_runtime):
    rt, events = await make_runtime(SupervisorSpec("root", probes(8)))
    victim = f"p{random.randrange(8)}"
    victim_pid = rt.whereis(victim).pid
    results: dict[str, list[str]] = {f"p{i}": [] for i in range(8)}
    slowest: dict[str, float] = dict.fromkeys(results, 0.0)
    stop = asyncio.Event()

    async def stream(name: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                reply = await rt.call(name, {"op": "echo", "value": n}, timeout=DEADLINE)
                assert reply["echo"] == n
                results[name].append("ok")
            except Exception as exc:
                results[name].append(type(exc).__name__)
                await asyncio.sleep(0.01)  # back off from a dead agent instead of spinning
            slowest[name] = max(slowest[name], time.monotonic() - started)

    workers = [asyncio.create_task(stream(n)) for n in results]
    await asyncio.sleep(random.uniform(0.2, 0.6))  # a random moment, mid-stream
    before = {n: len(r) for n, r in results.items()}
    os.kill(victim_pid, signal.SIGKILL)
    restarted = await events.wait("agent_restarted", agent=victim)
    # keep the streams going after the restart, then stop them
    target = len(results[victim]) + 20
    async with asyncio.timeout(10):
        while len(results[victim]) < target:
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*workers)

    for name, outcomes in results.items():
        if name == victim:
            continue
        assert outcomes and set(outcomes) == {"ok"}, (name, set(outcomes))
        assert len(outcomes) > before[name], f"{name} made no progress after the kill"
        assert slowest[name] < DEADLINE
    # the victim failed only fast (NoProcess), then answered again from a new process
    assert set(results[victim]) <= {"ok", "NoProcess"}
    assert results[victim][-20:] == ["ok"] * 20
    assert rt.whereis(victim).pid != victim_pid
    assert restarted["reason"] == "killed"
    exited = events.matching("agent_exited", agent=victim)[0]
    assert exited["signal"] == "SIGKILL"


async def test_fork_server_death_restarts_every_agent(make_runtime):
    rt, events = await make_runtime(SupervisorSpec("root", probes(3), intensity=10))
    old = {f"p{i}": rt.whereis(f"p{i}").pid for i in range(3)}
    rt.host.forkserver.kill()
    await events.wait("forkserver_died")
    for name in old:
        await events.wait("agent_restarted", agent=name, timeout=15)
    for name, pid in old.items():
        assert (await rt.call(name, {"op": "echo"}, timeout=5))["pid"] != pid
