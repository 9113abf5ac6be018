"""PA-1: every agent is its own process; one crash affects no other."""

from __future__ import annotations

import asyncio
import os
import random
import signal

from stalwart.runtime import SupervisorSpec
from stalwart.runtime._host import FORK_SERVER_START_S

from .conftest import FAST, NO_HANG_KILLS, probes

# Far beyond any answer or any detection of a death (milliseconds; 0.2 s at a load
# average of 25 on 2 cores): no call here is meant to reach it. Whether a call to the
# killed agent ended at the node's detection of its exit, and not at this deadline, is
# asserted by order (before the restart, which follows that detection), not by a time.
DEADLINE = 10.0


async def test_each_agent_has_its_own_process(make_runtime):
    rt, _ = await make_runtime(SupervisorSpec("root", probes(4)))
    pids = {(await rt.call(f"p{i}", {"op": "echo"}))["pid"] for i in range(4)}
    assert len(pids) == 4
    assert os.getpid() not in pids


async def test_sigkill_of_one_agent_under_load_affects_no_other(make_runtime):
    # the one failure here is the SIGKILL: no agent is killed as hung by a loaded machine
    rt, events = await make_runtime(SupervisorSpec("root", probes(8)), NO_HANG_KILLS)
    victim = f"p{random.randrange(8)}"
    pids = {f"p{i}": rt.whereis(f"p{i}").pid for i in range(8)}
    # each call: (the pid of the process the call went to, or None if none was running;
    # its outcome; whether the victim's restart had been reported when the call ended)
    results: dict[str, list[tuple[int | None, str, bool]]] = {f"p{i}": [] for i in range(8)}
    stop = asyncio.Event()

    def restarted() -> bool:
        return bool(events.matching("agent_restarted", agent=victim))

    async def stream(name: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            ref = rt.whereis(name)  # what rt.call resolves the name to, before any await
            try:
                reply = await rt.call(name, {"op": "echo", "value": n}, timeout=DEADLINE)
                assert reply["echo"] == n
                outcome = "ok"
            except Exception as exc:
                outcome = type(exc).__name__
            results[name].append((ref and ref.pid, outcome, restarted()))
            if outcome != "ok":
                await asyncio.sleep(0.01)  # back off from a dead agent instead of spinning

    workers = [asyncio.create_task(stream(n)) for n in results]
    await asyncio.sleep(random.uniform(0.2, 0.6))  # a random moment, mid-stream
    before = {n: len(r) for n, r in results.items()}
    os.kill(pids[victim], signal.SIGKILL)
    restart = await events.wait("agent_restarted", agent=victim)
    # keep the streams going after the restart, then stop them
    target = len(results[victim]) + 20
    async with asyncio.timeout(10):
        while len(results[victim]) < target:
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*workers)

    # the others: every call answered, by the same process, and they went on
    for name, calls in results.items():
        if name == victim:
            continue
        assert {outcome for _, outcome, _ in calls} == {"ok"}, (name, calls[-5:])
        assert len(calls) > before[name], f"{name} made no progress after the kill"
        assert rt.whereis(name).pid == pids[name]
    assert {e["agent"] for e in events.matching("agent_exited")} == {victim}
    # The victim's calls to the killed process were answered (before the kill landed) or
    # failed with NoProcess when the node saw the exit: every one had ended before the
    # restart that the exit triggered, none waited for its deadline.
    killed = [(outcome, late) for pid, outcome, late in results[victim] if pid == pids[victim]]
    assert {outcome for outcome, _ in killed} <= {"ok", "NoProcess"}, killed[-3:]
    assert not any(late for _, late in killed), killed[-3:]
    # while none ran, NoProcess at once; then the new process answered every call
    new_pid = rt.whereis(victim).pid
    assert new_pid != pids[victim]
    assert {o for pid, o, _ in results[victim] if pid is None} <= {"NoProcess"}
    assert {o for pid, o, _ in results[victim] if pid == new_pid} == {"ok"}
    assert [pid for pid, _, _ in results[victim][-20:]] == [new_pid] * 20
    assert restart["reason"] == "killed"
    exited = events.matching("agent_exited", agent=victim)[0]
    assert exited["signal"] == "SIGKILL"


async def test_fork_server_death_restarts_every_agent(make_runtime):
    rt, events = await make_runtime(SupervisorSpec("root", probes(3), intensity=10))
    old = {f"p{i}": rt.whereis(f"p{i}").pid for i in range(3)}
    rt.host.forkserver.kill()
    await events.wait("forkserver_died")
    # a new fork server boots (about 1 s of CPU, over 10 s of wall time at a load average
    # of 15), then each agent starts: what the runtime allows each of them, not less
    allowed = FORK_SERVER_START_S + FAST.start_timeout
    for name in old:
        await events.wait("agent_restarted", agent=name, timeout=allowed)
    for name, pid in old.items():
        assert (await rt.call(name, {"op": "echo"}, timeout=5))["pid"] != pid
