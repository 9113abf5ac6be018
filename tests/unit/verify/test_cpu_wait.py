"""PA-2 takes off a restart's latency what the machine's run queue added: the wait it
reads from the kernel grows while more threads want a CPU than there are CPUs."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from stalwart.verify._checks_process import RestartTimes, _queued_s, restart_verdict

pytestmark = pytest.mark.timeout(60)


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_the_wait_for_a_cpu_grows_under_contention_and_is_zero_for_no_process() -> None:
    ctx = multiprocessing.get_context("fork")
    spinners = [ctx.Process(target=_spin, args=(0.5,)) for _ in range(os.cpu_count() or 1)]
    before = _queued_s(os.getpid())
    started, cpu0 = time.monotonic(), time.thread_time()
    for proc in spinners:
        proc.start()
    try:
        _spin(0.5)  # one more runnable thread than CPUs: this one waits its turn too
    finally:
        for proc in spinners:
            proc.join(30)
    waited = _queued_s(os.getpid()) - before
    wall, cpu = time.monotonic() - started, time.thread_time() - cpu0
    assert [p.exitcode for p in spinners] == [0] * len(spinners)
    assert waited > 0.01
    # what the thread did not run, it mostly waited for: wait <= wall - CPU time
    assert waited <= wall - cpu + 0.05
    assert _queued_s(2**22 + 7) == 0.0  # no such process: nothing is taken off


def test_a_restart_is_judged_slow_only_when_even_every_wait_taken_off_leaves_a_second():
    idle = RestartTimes(0.25, (0.01, 0.0, 0.02))
    # 1.4 s on a busy machine: the node, the fork server and the agent each waited 0.5 s
    busy = RestartTimes(1.4, (0.5, 0.5, 0.5))
    assert (busy.less_largest_wait_s, busy.less_all_waits_s) == pytest.approx((0.9, 0.0))
    # a runtime that sleeps 1.2 s before restarting: nobody waited for a CPU meanwhile
    sleepy = RestartTimes(1.3, (0.02, 0.0, 0.05))
    # busy, and the waits cannot explain it all: 1.6 - 0.3 - 0.1 - 0.15 = 1.05 s of its own
    slow_busy = RestartTimes(1.6, (0.3, 0.1, 0.15))
    queued = RestartTimes(1.5, (0.4, 0.3, 0.45))  # 1.05 s less the largest; 0.35 s less all
    assert restart_verdict([idle, busy, idle]) == "fast"
    assert restart_verdict([idle, sleepy]) == "slow"
    assert restart_verdict([busy, slow_busy]) == "slow"
    assert restart_verdict([idle, queued, busy]) == "undecided"
    assert restart_verdict([]) == "fast"
