"""Open-loop arrivals sent from a process of their own, for load over HTTP.

A load generator on the event loop of the node it loads is slowed by that node. On a
2-core machine beside two busy processes, ``stalwart load`` asked for 105-143 tasks/s
at 3x and sent 51-77: each sleep until the next arrival woke late behind the node's
own work (its API, its store, the driver's sweeps), so "3x" was not three times the
load, and a submission the busy loop answered after the client's 10 s counted as an
error. A load tool must not share its clock with what it measures.

So over HTTP the arrivals (their Poisson times, the ``POST``\\ s and the node's answers)
run in a child process with its own interpreter and event loop (:func:`main`). The
driver in the node's process follows the accepted tasks in the store, as before. The
child reads one :class:`ArrivalPlan` line on stdin and writes one JSON line on stdout
per event: :class:`Started` when it sends the first arrival, :class:`Arrival` per
answer, :class:`Finished` after the last.

What was avoided: a thread with its own event loop in the node's process would still
share the node's GIL, and its submissions would queue behind the node's Python work.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import msgspec

from stalwart.durable import TaskRecord
from stalwart.errors import StalwartError

__all__ = [
    "Arrival",
    "ArrivalPlan",
    "Finished",
    "RemoteArrivals",
    "Schedule",
    "Started",
    "TaskApi",
    "run_remote",
    "submit_one",
    "task_id_of",
]

START_ALLOWANCE = 60.0
"""Seconds the child may take to start (imports, on a saturated machine) before its
phase counts as failed."""


def task_id_of(i: int) -> str:
    """The id of the driver's ``i``-th task."""
    return f"t{i:06d}"


class TaskApi(Protocol):
    """What the driver needs of a node: :class:`stalwart.node.Tasks` in this process, or
    :class:`~stalwart.chaos._http_tasks.HttpTasks` through its HTTP API."""

    async def submit(
        self, agent: str, task_input: Any, *, task_id: str | None = None, seed: int | None = None
    ) -> str: ...

    async def get(self, task_id: str) -> TaskRecord | None: ...


class ArrivalPlan(msgspec.Struct, frozen=True):
    """One open-loop phase, as the child sends it."""

    url: str
    token: str
    agent: str
    inputs_ref: str
    seed: int
    """The tasks' seed (and the input generator's)."""
    rng_seed: int
    """The arrival times' seed."""
    rate: float
    duration: float
    max_tasks: int
    first: int
    """The index of the phase's first task."""
    submit_timeout: float
    sys_path: list[str]
    """The parent's import path, so the child finds the app and its workload."""


class Started(msgspec.Struct, tag="started", frozen=True):
    at: float
    """``time.monotonic()`` when the first arrival was due (one clock for every process
    of the machine)."""


class Arrival(msgspec.Struct, tag="arrival", frozen=True):
    i: int
    accepted: bool
    at: float
    """``time.monotonic()`` of the node's answer."""
    reason: str = ""
    """When refused: the error's class name (``Overloaded``, ``TimeoutError``, ...)."""
    message: str = ""


class Finished(msgspec.Struct, tag="finished", frozen=True):
    arrivals: int
    offered: float
    """Seconds over which the arrivals were sent (at least the plan's duration)."""
    lag: float = 0.0
    """The most any arrival was sent after its due time, seconds: how far the generator
    fell behind its schedule."""


Event = Started | Arrival | Finished


class Schedule:
    """Seeded Poisson arrivals at ``rate``/s for ``duration`` s from ``started``, at most
    ``max_tasks``: :meth:`due` sleeps until each arrival is due and yields its number
    (from 0). Written once for the driver's in-process open loop and the arrival
    process; ``lag`` is the most any arrival was sent after its due time."""

    def __init__(
        self, rng: random.Random, rate: float, duration: float, max_tasks: int, started: float
    ) -> None:
        self._rng = rng
        self.rate, self.duration, self.max_tasks = rate, duration, max_tasks
        self.started = started
        self.end = started + duration
        self.arrivals = 0
        self.lag = 0.0

    async def due(self) -> AsyncIterator[int]:
        at = self.started
        while self.arrivals < self.max_tasks:
            at += self._rng.expovariate(self.rate) if self.rate > 0 else self.duration
            if at >= self.end:
                return
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            self.lag = max(self.lag, time.monotonic() - at)
            yield self.arrivals
            self.arrivals += 1

    def offered(self) -> float:
        """Seconds over which the arrivals went out: the duration itself when on time
        (``end - started`` read 0.29999999999927 for 0.3), longer when sent late."""
        return max(self.duration, time.monotonic() - self.started)


async def submit_one(
    tasks: TaskApi, agent: str, task_input: Any, i: int, *, seed: int, timeout: float
) -> Arrival:
    """Submit the driver's task ``i``; the node's answer. One not answered within
    ``timeout`` is looked up by its id before it counts as refused: a node that stored
    it and answered late accepted it, and its task runs."""
    task_id = task_id_of(i)
    try:
        async with asyncio.timeout(timeout):
            await tasks.submit(agent, task_input, task_id=task_id, seed=seed)
    except StalwartError as exc:
        return Arrival(i, False, time.monotonic(), type(exc).__name__, f"{task_id}: {exc}"[:400])
    except TimeoutError:
        with contextlib.suppress(StalwartError, TimeoutError):
            async with asyncio.timeout(timeout):
                if await tasks.get(task_id) is not None:
                    return Arrival(i, True, time.monotonic())
        message = f"{task_id}: no answer in {timeout:g} s, and not stored"
        return Arrival(i, False, time.monotonic(), "TimeoutError", message)
    return Arrival(i, True, time.monotonic())


class RemoteArrivals(msgspec.Struct, frozen=True):
    """Where a driver's open-loop phases are sent from a child process: the node's API
    and a bearer token for it, and the input generator (``module:function``)."""

    url: str
    token: str
    inputs_ref: str


async def run_remote(
    source: RemoteArrivals,
    *,
    agent: str,
    seed: int,
    rng_seed: int,
    rate: float,
    duration: float,
    max_tasks: int,
    first: int,
    submit_timeout: float,
    on_event: Callable[[Started | Arrival], None],
) -> Finished:
    """Run one phase's arrivals in a child process, calling ``on_event`` for each of its
    events as it comes; returns its :class:`Finished`. Raises :class:`StalwartError`
    naming the child's last words when it fails or overruns its deadline (the child is
    killed then)."""
    plan = ArrivalPlan(
        url=source.url,
        token=source.token,
        agent=agent,
        inputs_ref=source.inputs_ref,
        seed=seed,
        rng_seed=rng_seed,
        rate=rate,
        duration=duration,
        max_tasks=max_tasks,
        first=first,
        submit_timeout=submit_timeout,
        sys_path=[p for p in sys.path if p],
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",  # not -m: the package imports this module first, and runpy warns of that
        "from stalwart.chaos._arrivals import main; main()",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    decoder = msgspec.json.Decoder(Event)
    finished: Finished | None = None
    last_words = bytearray()

    async def read_stderr() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(4096):
            last_words.extend(chunk)
            del last_words[:-2000]

    try:
        async with asyncio.timeout(START_ALLOWANCE + duration + submit_timeout + 5):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(read_stderr())
                proc.stdin.write(msgspec.json.encode(plan) + b"\n")
                await proc.stdin.drain()
                proc.stdin.close()
                while line := await proc.stdout.readline():
                    event = decoder.decode(line)
                    if isinstance(event, Finished):
                        finished = event
                    else:
                        on_event(event)
                await proc.wait()
    except TimeoutError:
        raise StalwartError(
            f"the load's arrival process did not finish its {duration:g} s phase in time; "
            f"its last output: {bytes(last_words).decode(errors='replace')[-600:]!r}"
        ) from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if finished is None or proc.returncode != 0:
        raise StalwartError(
            f"the load's arrival process exited with {proc.returncode} before its phase "
            f"ended: {bytes(last_words).decode(errors='replace').strip()[-600:]}"
        )
    return finished


async def _send(plan: ArrivalPlan, emit: Callable[[Event], None]) -> Finished:
    """The child's phase: arrivals at the plan's times, each answer emitted as it comes."""
    from stalwart.chaos._http_tasks import HttpTasks  # the child's imports, not the parent's
    from stalwart.chaos._target import load_inputs

    inputs = load_inputs(plan.inputs_ref, plan.seed)
    rng = random.Random(plan.rng_seed)
    client = HttpTasks(plan.url, token=plan.token)

    async def submit(i: int) -> None:
        emit(await submit_one(client, plan.agent, inputs(i), i, seed=plan.seed,
                              timeout=plan.submit_timeout))  # fmt: skip

    try:
        schedule = Schedule(rng, plan.rate, plan.duration, plan.max_tasks, time.monotonic())
        emit(Started(schedule.started))
        async with asyncio.TaskGroup() as tg:
            async for k in schedule.due():
                tg.create_task(submit(plan.first + k))
            offered = schedule.offered()
        return Finished(schedule.arrivals, offered, schedule.lag)
    finally:
        await client.aclose()


def main() -> None:
    """Read the plan from stdin, run it, write the events to stdout."""
    plan = msgspec.json.decode(sys.stdin.buffer.readline(), type=ArrivalPlan)
    for path in reversed(plan.sys_path):
        if path not in sys.path:
            sys.path.insert(0, path)
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    with contextlib.suppress(OSError, AttributeError):
        # room for every answer of a phase (~100 bytes each) while a busy parent reads
        # late: a full pipe would block this loop, and the arrivals with it
        fcntl.fcntl(out.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)

    def emit(event: Event) -> None:
        out.write(encoder.encode(event) + b"\n")
        out.flush()

    try:
        emit(asyncio.run(_send(plan, emit)))
    except StalwartError as exc:  # what is wrong, for the parent to quote; not a traceback
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        raise SystemExit(2) from None
