"""PA-1, PA-2, PA-3: isolated processes, supervision, messages with deadlines."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Sequence

from stalwart.config import RuntimeSettings
from stalwart.errors import CallTimeout, NoProcess
from stalwart.observe import EventBus
from stalwart.runtime import ChildSpec, Runtime, SupervisorSpec
from stalwart.verify._probe import VerifyProbe
from stalwart.verify._registry import Outcome, check, next_event, pct
from stalwart.verify._target import Target


@check(
    "PA-1",
    criterion=(
        "every agent its own pid; no task on another agent fails while one is SIGKILLed; the "
        "killed one is back under a new pid"
    ),
    does="runs the workload over all agents and SIGKILLs one agent process",
    kills=1,
    estimate_s=15,
)
async def isolated_processes(t: Target) -> Outcome:
    agents = t.agent_names()
    pids = {a: t.pid(a) for a in agents}
    distinct = len(set(pids.values())) == len(agents) and os.getpid() not in pids.values()
    victim = t.rng.choice(agents)
    inputs = t.workload(40, seed=101)
    ids = await t.submit_all(inputs, prefix="pa1")
    # crash one agent while the others are processing
    await asyncio.sleep(0.2)
    killed_at = time.time()
    killed_pid = t.kill(victim)
    records = [await t.tasks.wait(i, timeout=120) for i in ids]
    ok = sum(r.status == "succeeded" for r in records)
    await t.wait_event("agent_restarted", timeout=10, agent=victim)
    back = t.pid(victim)
    evidence = {
        "pids": pids,
        "killed": victim,
        "killed_pid": killed_pid,
        "killed_at": killed_at,
        "restarted_pid": back,
        "tasks": len(records),
        "succeeded": ok,
        "failed": [r.id for r in records if r.status != "succeeded"],
    }
    if distinct and ok == len(records) and back is not None and back != killed_pid:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "every agent must be its own process under a supervisor; "
        "see the failed task ids and docs/runtime.md",
    )


def _queued_s(pid: int | None) -> float:
    """Seconds the main thread of ``pid`` has spent runnable but waiting for a CPU (the
    kernel's ``schedstat``; 0 when unreadable: nothing is then taken off a latency)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _restart_path(t: Target) -> list[int | None]:
    """The processes a restart waits on besides the new agent: the node (this process's
    event loop) and the fork server that forks the agent."""
    fs = t.node.runtime.host.forkserver
    return [os.getpid(), fs.pid if fs is not None else None]


RESTART_BOUND_S = 1.0
"""PA-2's bound on one restart (the checklist's: detected and restarted within 1 s)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RestartTimes:
    """One restart: its wall time and how long each process on its path (the node's event
    loop, the fork server, the new agent) waited for a CPU meanwhile."""

    latency_s: float
    waits_s: tuple[float, ...]

    @property
    def less_largest_wait_s(self) -> float:
        """The wall time less the largest single wait: what the restart took at most on
        an idle machine (waits that overlap delay it once; this credits only one)."""
        return max(0.0, self.latency_s - max(self.waits_s, default=0.0))

    @property
    def less_all_waits_s(self) -> float:
        """The wall time less every process's wait: what it took at least (the path's
        steps run one after another, but a process may also have waited off the path)."""
        return max(0.0, self.latency_s - sum(self.waits_s))


def restart_verdict(restarts: Sequence[RestartTimes], bound: float = RESTART_BOUND_S) -> str:
    """``fast`` when every restart was under ``bound`` crediting only its largest wait for
    a CPU; ``slow`` when one was at or over it even crediting all of them (the runtime's
    own time: CPU, sleeps, I/O); else ``undecided``: the machine's run queue, not the
    runtime, may be what made a restart slow, and this run cannot tell which."""
    if all(r.less_largest_wait_s < bound for r in restarts):
        return "fast"
    if any(r.less_all_waits_s >= bound for r in restarts):
        return "slow"
    return "undecided"


@check(
    "PA-2",
    criterion=(
        "each of 5 crashes detected and restarted, restart p99 < 1 s (less the time the "
        "restart's processes waited for a CPU the machine gave to others); a test "
        "supervisor gives up on the 6th crash in 60 s"
    ),
    does="SIGKILLs one agent 5 times, then exceeds a test supervisor's intensity",
    kills=5,
    estimate_s=15,
)
async def supervision(t: Target) -> Outcome:
    victim = t.agent_names()[-1]
    latencies: list[float] = []
    detections: list[float] = []
    # per restart: how long each process on its path waited for a CPU meanwhile (a shared
    # or overloaded machine's run queue, not the runtime's work)
    restarts: list[RestartTimes] = []
    for _ in range(5):
        path = _restart_path(t)
        waited = [_queued_s(pid) for pid in path]
        before = time.time()
        started = time.monotonic()
        t.kill(victim)
        exited = await t.wait_event("agent_exited", timeout=10, after=before, agent=victim)
        detections.append(exited.ts - before)
        await t.wait_event("agent_restarted", timeout=10, after=before, agent=victim)
        await t.node.call(victim, {"op": "running"}, timeout=5)  # it answers again
        latencies.append(time.monotonic() - started)
        # the new agent waited only within the restart: all of its wait counts
        waits = [_queued_s(pid) - w for pid, w in zip(path, waited, strict=True)]
        waits.append(_queued_s(t.pid(victim)))
        restarts.append(RestartTimes(latencies[-1], tuple(round(w, 4) for w in waits)))
        await asyncio.sleep(0.05)
    # intensity: a test supervisor with the default 5 restarts in 60 s must give up on the 6th
    bus = EventBus(log=False)
    spec = SupervisorSpec("intensity-test", [ChildSpec("probe", VerifyProbe)])
    async with Runtime(spec, RuntimeSettings(heartbeat_interval=0.5), events=bus) as rt:
        for _ in range(6):  # the sixth crash in a minute is one too many
            ref = rt.whereis("probe")
            if ref is None:
                break
            waiting = asyncio.ensure_future(
                next_event(bus, "agent_exited", timeout=10, agent="probe", pid=ref.pid)
            )
            await asyncio.sleep(0)
            os.kill(ref.pid, signal.SIGKILL)
            await waiting
            if not rt.failed.done():
                await next_event(bus, "agent_started", timeout=10, agent="probe")
        gave_up = bus.recent("supervisor_gave_up")
    upper = [r.less_largest_wait_s for r in restarts]
    lower = [r.less_all_waits_s for r in restarts]
    verdict = restart_verdict(restarts)
    load = round(os.getloadavg()[0], 2)
    evidence = {
        "restart_latency_s": latencies,
        "restart_p99_s": pct(latencies, 0.99),
        # per restart: the node's loop, the fork server, the new agent
        "waiting_for_a_cpu_s": [list(r.waits_s) for r in restarts],
        "restart_less_cpu_wait_s": upper,
        "restart_less_cpu_wait_p99_s": pct(upper, 0.99),
        "restart_less_all_cpu_waits_s": lower,
        "restart_less_all_cpu_waits_p99_s": pct(lower, 0.99),
        "bound_s": RESTART_BOUND_S,
        "restart_speed": verdict,
        "load_average_1m": load,
        "cpus": os.cpu_count(),
        "detection_s": detections,
        "intensity": spec.intensity,
        "period_s": spec.period,
        "gave_up": [e.fields for e in gave_up],
    }
    raw, judged = pct(latencies, 0.99), pct(upper, 0.99)
    measured = f"restart p99 {raw:.3f} s"
    if judged < raw - 0.001:
        measured += (
            f" ({judged:.3f} s less the largest wait for a CPU, {pct(lower, 0.99):.3f} s less "
            f"all of them; machine at load {load:g})"
        )
    if not gave_up or verdict == "slow":
        return Outcome(
            "failed",
            evidence,
            "restarts must take under 1 s (less what the machine's run queue added) and the "
            "intensity limit must make the supervisor give up (docs/runtime.md)",
            measured,
        )
    if verdict == "undecided":
        evidence["why_partial"] = (
            "a restart took 1 s or more, and under 1 s less the time its processes waited "
            "for a CPU: the machine's run queue may be what made it slow"
        )
        return Outcome(
            "partial",
            evidence,
            f"the machine was busy (load {load:g} on {os.cpu_count()} CPUs): rerun PA-2 on a "
            "quieter machine (stalwart verify --only PA-2) to tell the runtime's restart "
            "time from the wait for a CPU",
            measured,
        )
    return Outcome("complete", evidence, measured=measured)


def _shared_writable_mappings(pid: int) -> tuple[list[str], list[str]]:
    """Shared writable memory mappings of ``pid``: (suspicious, the store's own).

    SQLite in WAL mode maps its ``-shm`` index file shared between every process
    using the database; that is the store's locking, not agents talking through
    memory, so it is reported apart.
    """
    suspicious: list[str] = []
    store: list[str] = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split()
                perms = parts[1]
                if perms.startswith("rw") and perms.endswith("s"):
                    path = parts[5] if len(parts) > 5 else "(anonymous)"
                    (store if path.endswith("-shm") else suspicious).append(path)
    except OSError as exc:
        suspicious.append(f"unreadable: {exc}")
    return suspicious, store


@check(
    "PA-3",
    criterion=(
        "no shared writable memory between agents; a call to a slow agent ends at its 0.5 s "
        "deadline (< 1 s); a call to a stopped one fails in < 0.1 s"
    ),
    does="inspects the agents' memory maps; calls a slow and a stopped probe agent",
    estimate_s=5,
)
async def messages_with_deadlines(t: Target) -> Outcome:
    pids = {a: t.pid(a) for a in t.agent_names()}
    mappings = {a: _shared_writable_mappings(p) for a, p in pids.items() if p}
    shared = {a: m[0] for a, m in mappings.items()}
    store_index = {a: m[1] for a, m in mappings.items()}
    timeouts = {
        "agent_call_default_s": t.node.runtime.settings.timeouts.agent_call,
        "model_s": t.node.runtime.settings.timeouts.model,
        "tool_s": t.node.runtime.settings.timeouts.tool,
    }
    bus = EventBus(log=False)
    spec = SupervisorSpec(
        "pa3", [ChildSpec("slow", VerifyProbe), ChildSpec("gone", VerifyProbe, restart="temporary")]
    )
    async with Runtime(spec, RuntimeSettings(heartbeat_interval=0.5), events=bus) as rt:
        started = time.monotonic()
        try:
            await rt.call("slow", {"op": "sleep", "s": 10}, timeout=0.5)
            slow_s = float("inf")
        except CallTimeout:
            slow_s = time.monotonic() - started
        gone = rt.whereis("gone")
        assert gone is not None
        exited = asyncio.ensure_future(next_event(bus, "agent_exited", timeout=10, agent="gone"))
        await asyncio.sleep(0)
        os.kill(gone.pid, signal.SIGKILL)
        await exited
        started = time.monotonic()
        try:
            await rt.call("gone", {"op": "echo"}, timeout=5)
            dead_s = float("inf")
        except NoProcess:
            dead_s = time.monotonic() - started
    evidence = {
        "shared_writable_mappings": shared,
        "store_index_mappings": store_index,
        "timeouts": timeouts,
        "slow_call_deadline_s": 0.5,
        "slow_call_ended_after_s": slow_s,
        "dead_call_failed_after_s": dead_s,
    }
    ok = not any(shared.values()) and 0.5 <= slow_s < 1.0 and dead_s < 0.1
    if ok:
        return Outcome("complete", evidence)
    return Outcome(
        "failed",
        evidence,
        "calls must end at their deadline, fail at once on a dead "
        "target, and agents must share no writable memory",
    )
