"""The pulse: a heartbeat a blocked loop cannot silence, and who blocks the loop.

An agent's ordinary heartbeat is a coroutine on its event loop, so a step that
blocks the loop (``time.sleep``, a busy loop, a huge allocation) silences it,
and so does a loop merely slowed by a busy machine. The two must not be told
apart by silence alone. The pulse separates them:

- a *ticker* coroutine on the loop stamps ``tick`` every quarter interval;
- a dedicated *pulse thread* wakes every ``interval`` and sends the node one
  datagram, :class:`Pulse`, on a socket of its own: the loop's *lag* (seconds
  since its last tick) and, when the loop is held, the *blame* tag of the
  asyncio task holding it (see :data:`BLAME`) and whether that task is past
  its deadline.

A thread that itself woke late (by more than half an interval) was starved
with the whole process: it reports no lag for that round, so a machine whose
cores are saturated does not make a healthy loop look blocked. A process that
is stopped or frozen sends no pulse at all: the node's silence rule catches it.

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
import socket
import threading
import time
from collections.abc import Coroutine, Generator
from typing import Any

import msgspec

__all__ = ["BLAME", "Blame", "LoopWatch", "Pulse", "decode_pulse"]


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
    if exactly one (blame for a memory overrun that does not block the loop).
    """

    seq: int
    lag: float
    busy: str = ""
    overdue: bool = False
    sole: str = ""


_DECODER = msgspec.msgpack.Decoder(Pulse)
_ENCODER = msgspec.msgpack.Encoder()


def decode_pulse(data: bytes) -> Pulse | None:
    """The pulse in ``data``, or None for a datagram that is not one (dropped)."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError:
        return None


class LoopWatch:
    """Runs the ticker and the pulse thread of one agent process (see the module doc)."""

    def __init__(self, sock: socket.socket, interval: float) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.interval = interval
        self.tick = time.monotonic()
        self.blames: dict[asyncio.Task[Any], Blame] = {}
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0
        self.dropped = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Install the blame-inheriting task factory and start the pulse thread."""
        self._loop = loop
        loop.set_task_factory(self._factory)
        self._thread = threading.Thread(target=self._pulse, name="stalwart-pulse", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval)

    async def ticker(self) -> None:
        """Stamp ``tick`` while the loop runs (a task of the agent's main)."""
        step = self.interval / 4
        while True:
            self.tick = time.monotonic()
            await asyncio.sleep(step)

    def _factory(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, context=context)
        blame = BLAME.get() if context is None else context.get(BLAME)
        if blame is not None:
            fresh = blame not in self.blames.values()
            self.blames[task] = blame
            task.add_done_callback(self._forget)
            if fresh:  # new work: tell the node now, not at the next interval
                self._nudge.set()
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.blames.pop(task, None)

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
            else:
                starved = now - expected > self.interval / 2
                expected = now + self.interval
            seq += 1
            lag = 0.0 if starved else max(0.0, now - self.tick - self.interval / 4)
            pulse = Pulse(seq=seq, lag=round(lag, 4), sole=self._sole())
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
