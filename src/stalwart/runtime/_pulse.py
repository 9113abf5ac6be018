"""The pulse: a heartbeat a blocked loop cannot silence, and who blocks the loop.

An agent's ordinary heartbeat is a coroutine on its event loop, so a step that
blocks the loop (``time.sleep``, a busy loop, a huge allocation) silences it,
and so does a loop merely slowed by a busy machine. The two must not be told
apart by silence alone. The pulse separates them:

- a dedicated *pulse thread* wakes every ``interval``, posts a *probe* (a no-op
  callback) to the loop when none is pending, and sends the node one datagram,
  :class:`Pulse`, on a socket of its own: the loop's *lag* (seconds the pending
  probe has waited to run: 0.0 when the last one ran) and, when the loop is held,
  the *blame* tag of the asyncio task holding it (see :data:`BLAME`) and whether
  that task is past its deadline.

The lag is a lower bound that trails the truth by at most one interval (a loop
blocked just after a probe ran is seen at the next round's probe), so a blocked
loop is reported past a threshold T within T + one interval. That is the price of
an idle process costing one loop wake-up per interval: an earlier ticker coroutine
stamped the loop four times per interval for a quarter-interval resolution, and
with a thousand idle session processes those wake-ups alone kept a core busy.

An *idle* process (no blamed task, no call or cast being handled, and its last
probe ran) pulses, probes and beats every :data:`IDLE_SLOWDOWN` intervals instead,
and its pulse says so (``quiet``), so the node waits that much longer before
treating its silence as a freeze. New work wakes the pulse thread at once. A frozen
idle process is therefore found within ``IDLE_SLOWDOWN`` intervals plus the hang
threshold; a thousand idle processes cost the node and the machine a fifth of what
they would at the busy cadence.

A busy machine must not make a healthy loop look blocked. Two rules see to it:

- the lag leaves out the time the loop's thread spent *runnable but waiting for a
  CPU* while the probe was pending (Linux's per-thread ``schedstat``, read
  through one kept file descriptor, about 4 µs a read), down to at most
  1/:data:`MAX_SLOWDOWN` of the wall time. What remains is the time the thread
  ran or slept: a loop that runs 0.2 s of CPU work while a busy machine keeps it
  waiting for 0.6 s more reports 0.2 s, not 0.8 s; a loop blocked in
  ``time.sleep`` reports all of it, and a spinning one its share of the CPU.
  The floor bounds what a busy machine can hide: a loop held for
  ``MAX_SLOWDOWN`` times the hang threshold is hung however busy the machine
  (so a spin is still killed well within a task's lease). Where ``schedstat``
  is missing (another OS, a kernel without it) the lag is wall time;
- a pulse thread that itself woke late (by more than half an interval) was
  starved with the whole process: it reports no lag for that round.

A process that is stopped or frozen sends no pulse at all: the node's silence
rule catches it.

Blame travels with asyncio tasks: an agent sets :data:`BLAME` (a
:class:`Blame`) in the context a task is created with, and every task created
from inside it inherits the tag (the pulse installs a task factory). The agent
layer tags each task it runs with the task's id, so the node can charge a
killed process to the task that held its loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Coroutine, Generator
from typing import Any

import msgspec

__all__ = [
    "BLAME",
    "IDLE_SLOWDOWN",
    "MAX_SLOWDOWN",
    "Blame",
    "LoopWatch",
    "Pulse",
    "RunQueueClock",
    "decode_pulse",
]

IDLE_SLOWDOWN = 5
"""An idle agent process (nothing in flight) pulses and beats every this many intervals."""

MAX_SLOWDOWN = 4.0
"""A loop's lag leaves out its run-queue wait down to 1/MAX_SLOWDOWN of the wall time."""


@dataclasses.dataclass(frozen=True, slots=True)
class Blame:
    """What the node should charge if this asyncio task holds the loop too long.

    ``tag`` names the work (a task id); ``deadline`` (``time.monotonic()``
    seconds, or None) is when holding the loop stops being slow and becomes a
    timeout the node enforces by killing the process.
    """

    tag: str
    deadline: float | None = None


BLAME: contextvars.ContextVar[Blame | None] = contextvars.ContextVar("stalwart_blame", default=None)
"""The blame of the code running now (inherited by the asyncio tasks it creates)."""


class Pulse(msgspec.Struct, array_like=True, frozen=True):
    """One pulse datagram, agent to node.

    ``lag``: seconds the loop has not run (0.0 while it runs); ``busy``: the blame
    tag of the task holding the loop when ``lag`` is at least one interval;
    ``overdue``: that task is past its deadline; ``sole``: the only tag in flight,
    if exactly one (blame for a memory overrun that does not block the loop);
    ``quiet``: the process is idle and its next pulse may come this many seconds
    later than one interval (0.0: it pulses every interval).
    """

    seq: int
    lag: float
    busy: str = ""
    overdue: bool = False
    sole: str = ""
    quiet: float = 0.0


_DECODER = msgspec.msgpack.Decoder(Pulse)
_ENCODER = msgspec.msgpack.Encoder()


def decode_pulse(data: bytes) -> Pulse | None:
    """The pulse in ``data``, or None for a datagram that is not one (dropped)."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError:
        return None


class RunQueueClock:
    """Seconds one thread has spent runnable but waiting for a CPU, from Linux's
    ``/proc/self/task/<tid>/schedstat`` (its second field, in nanoseconds).

    The file is opened once and re-read with ``pread``: the kernel renders it anew
    at each read. Without the file :meth:`waited` is always 0.0, so a lag is
    wall time, as it was before this clock existed.
    """

    def __init__(self, tid: int) -> None:
        try:
            self._fd: int | None = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    @property
    def available(self) -> bool:
        return self._fd is not None

    def waited(self) -> float:
        if self._fd is None:
            return 0.0
        try:
            return int(os.pread(self._fd, 96, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class LoopWatch:
    """Runs the pulse thread of one agent process and its probes (see the module doc)."""

    def __init__(self, sock: socket.socket, interval: float) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.interval = interval
        # when the pending probe was posted (the pulse thread sets it, the loop clears it
        # when the probe runs); None: no probe waits, the loop ran the last one
        self._posted: float | None = None
        # the loop thread's run-queue wait when the pending probe was posted
        self._posted_queued = 0.0
        self._queued: RunQueueClock | None = None
        self.started = 0  # blamed asyncio tasks created so far: a cheap "work happened"
        self.working = 0  # calls and casts being handled (work_started / work_ended)
        # set on the loop when work starts: the agent's heartbeat, asleep at the idle
        # cadence, wakes to beat (and ship metrics) at the busy one
        self.woken = asyncio.Event()
        self.blames: dict[asyncio.Task[Any], Blame] = {}
        # how many live tasks carry each blame: "is this work new?" is one lookup, not a
        # scan of every task (a process running 1,000 tasks creates thousands a second)
        self._live: dict[Blame, int] = {}
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0
        self.dropped = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Install the blame-inheriting task factory and start the pulse thread."""
        self._loop = loop
        # called on the loop's own thread: its run-queue wait is the loop's
        self._queued = RunQueueClock(threading.get_native_id())
        loop.set_task_factory(self._factory)
        self._thread = threading.Thread(target=self._pulse, name="stalwart-pulse", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval)
        if self._queued is not None and (self._thread is None or not self._thread.is_alive()):
            self._queued.close()

    def _probe(self) -> None:
        """The probe: runs on the loop, and so proves the loop runs."""
        self._posted = None

    def _lag(self, now: float) -> float | None:
        """Seconds the pending probe has waited, posting one if none waits (None: the
        loop is closed and the pulse thread should end)."""
        posted = self._posted
        queued = self._queued
        assert self._loop is not None and queued is not None
        if posted is not None:
            # leave out the time the loop's thread was runnable but had no CPU, down to
            # a floor (the module doc says why)
            wall = now - posted
            return max(wall - (queued.waited() - self._posted_queued), wall / MAX_SLOWDOWN)
        self._posted_queued = queued.waited()
        self._posted = now  # before posting, so the probe's clearing cannot be lost
        try:
            self._loop.call_soon_threadsafe(self._probe)
        except RuntimeError:  # the loop is closed: the process is ending
            return None
        return 0.0

    def _factory(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, context=context)
        blame = BLAME.get() if context is None else context.get(BLAME)
        if blame is not None:
            fresh = blame not in self._live
            self._live[blame] = self._live.get(blame, 0) + 1
            self.blames[task] = blame
            self.started += 1
            task.add_done_callback(self._forget)
            if fresh:  # new work: tell the node now, not at the next interval
                self._nudge.set()
                self.woken.set()
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        blame = self.blames.pop(task, None)
        if blame is None:
            return
        left = self._live[blame] - 1
        if left:
            self._live[blame] = left
        else:
            del self._live[blame]

    def _holder(self) -> Blame | None:
        assert self._loop is not None
        try:
            task = asyncio.current_task(self._loop)
        except RuntimeError:
            return None
        return None if task is None else self.blames.get(task)

    def _sole(self) -> str:
        try:
            tags = {b.tag for b in list(self.blames.values())}
        except RuntimeError:  # changed size while copied: no claim this round
            return ""
        return next(iter(tags)) if len(tags) == 1 else ""

    def idle(self) -> bool:
        """Nothing in flight: no blamed task, no call or cast being handled."""
        return not self.blames and self.working == 0

    def work_started(self) -> None:
        """A call or cast is being handled (the agent's main says so; see :meth:`idle`)."""
        self.working += 1
        if self.working == 1:
            self._nudge.set()  # an idle process pulses slowly: back to every interval now
            self.woken.set()

    def work_ended(self) -> None:
        self.working -= 1

    def _pulse(self) -> None:
        seq = 0
        expected = time.monotonic() + self.interval
        while not self._stop.is_set():
            nudged = self._nudge.wait(max(0.0, expected - time.monotonic()))
            if self._stop.is_set():
                return
            now = time.monotonic()
            if nudged:  # the loop just started new work: it runs; say what is in flight
                self._nudge.clear()
                starved = True
                expected = min(expected, now + self.interval)
            else:
                starved = now - expected > self.interval / 2
                expected = now + self.interval
            seq += 1
            ran_last = self._posted is None  # the loop ran the last probe
            waited = self._lag(now)
            if waited is None:
                return
            lag = 0.0 if starved else waited
            # idle, and the loop ran the last probe: the next pulse may wait IDLE_SLOWDOWN
            # intervals, and the pulse says so, so the node waits that long for it
            quiet = 0.0
            if ran_last and self.idle():
                quiet = self.interval * (IDLE_SLOWDOWN - 1)
                expected += quiet
            pulse = Pulse(seq=seq, lag=round(lag, 4), sole=self._sole(), quiet=quiet)
            if lag >= self.interval:
                held = self._holder()
                if held is not None:
                    overdue = held.deadline is not None and now > held.deadline
                    pulse = Pulse(seq, pulse.lag, held.tag, overdue, pulse.sole)
            try:
                self.sock.send(_ENCODER.encode(pulse))
                self.sent += 1
            except (BlockingIOError, InterruptedError):
                self.dropped += 1  # the node is not reading: the next pulse says it again
            except OSError:
                return  # the node's end is gone: the main channel's EOF ends the process
