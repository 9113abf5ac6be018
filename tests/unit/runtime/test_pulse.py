"""The pulse's lag on a busy machine: a loop slowed only by waiting for a CPU is not a
blocked loop, and a blocked one still shows (see ``stalwart.runtime._pulse``)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from stalwart.runtime._pulse import MAX_SLOWDOWN, LoopWatch, RunQueueClock, decode_pulse

INTERVAL = 0.05

pytestmark = pytest.mark.timeout(60)

has_schedstat = RunQueueClock(threading.get_native_id()).available


def _hog(cpu: int, started: multiprocessing.synchronize.Event, stop_at: float) -> None:
    os.sched_setaffinity(0, {cpu})
    started.set()
    while time.monotonic() < stop_at:
        pass


@pytest.fixture
def shared_cpu() -> Iterator[int]:
    """A CPU that a spinning process wants (the machine's other load only adds to it)."""
    cpu = min(os.sched_getaffinity(0))
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    hog = ctx.Process(target=_hog, args=(cpu, started, time.monotonic() + 30), daemon=True)
    hog.start()
    try:
        assert started.wait(20), "the CPU hog did not start"
        yield cpu
    finally:
        hog.kill()
        hog.join(10)


def _lags(on_loop: Callable[[], None], *, cpu: int | None = None) -> tuple[list[float], float]:
    """Run ``on_loop`` as one callback, inside a call being handled, on a loop that a
    LoopWatch watches; the lags its pulses reported, and the callback's wall time.

    The loop runs on a thread of its own; with ``cpu`` that thread (and so its pulse
    thread) is pinned to ``cpu`` at nice 5, so a process spinning there at nice 0
    keeps it waiting for the CPU about three quarters of the time.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.setblocking(False)
    wall: list[float] = []
    failed: list[BaseException] = []

    async def main() -> None:
        watch = LoopWatch(ours, INTERVAL)
        watch.start(asyncio.get_running_loop())
        try:
            await asyncio.sleep(3 * INTERVAL)  # a few pulses of an idle, healthy loop
            watch.work_started()  # as the agent's main does for a call: busy cadence
            await asyncio.sleep(2 * INTERVAL)
            started = time.monotonic()
            on_loop()
            wall.append(time.monotonic() - started)
            await asyncio.sleep(3 * INTERVAL)  # the pulses after it: the probe ran
            watch.work_ended()
        finally:
            watch.stop()

    def run() -> None:
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})  # this thread only
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 5)
            asyncio.run(main())
        except BaseException as e:  # handed to the test's thread
            failed.append(e)

    try:
        thread = threading.Thread(target=run, name="watched-loop")
        thread.start()
        thread.join(40)
        assert not thread.is_alive(), "the watched loop did not finish"
        if failed:
            raise failed[0]
        lags = []
        while True:
            try:
                pulse = decode_pulse(theirs.recv(1024))
            except BlockingIOError:
                break
            assert pulse is not None
            lags.append(pulse.lag)
    finally:
        ours.close()
        theirs.close()
    return lags, wall[0]


def _spend_cpu(seconds: float) -> Callable[[], None]:
    def spin() -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    return spin


@pytest.mark.skipif(not has_schedstat, reason="no per-thread schedstat on this kernel")
def test_a_loop_that_waits_for_a_shared_cpu_reports_its_work_not_its_wait(shared_cpu):
    cpu_s = 0.3
    lags, wall = _lags(_spend_cpu(cpu_s), cpu=shared_cpu)
    # the callback shared its CPU with a spinning process: it took longer in wall time
    assert wall > 2 * cpu_s, f"no contention: {wall:.2f} s of wall time for {cpu_s} s of CPU"
    # ... but the pulse counts what the loop did, not its time in the run queue (down
    # to a quarter of the wall time: a busy machine cannot hide a loop held for long)
    assert max(lags) <= max(cpu_s, wall / MAX_SLOWDOWN) + 2 * INTERVAL + 0.05, (lags, wall)
    assert max(lags) < wall - 2 * INTERVAL, (lags, wall)  # wall time would have been seen
    # ... and still sees that the loop was held by that work
    assert max(lags) >= cpu_s / 2, (lags, wall)


def test_a_loop_blocked_in_sleep_reports_the_whole_block():
    lags, wall = _lags(lambda: time.sleep(0.4))
    assert max(lags) >= 0.4 - 2 * INTERVAL, (lags, wall)


def test_the_run_queue_clock_reads_a_thread_s_waiting_time():
    clock = RunQueueClock(threading.get_native_id())
    try:
        if not clock.available:
            assert clock.waited() == 0.0  # no schedstat: lags stay wall time
            return
        first = clock.waited()
        _spend_cpu(0.05)()
        assert clock.waited() >= first >= 0.0  # a counter of seconds: it never goes back
    finally:
        clock.close()
    assert clock.waited() == 0.0 and not clock.available  # closed: no descriptor left
