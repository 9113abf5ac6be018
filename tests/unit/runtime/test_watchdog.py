"""The watchdog's judgement of one agent process (:func:`stalwart.runtime._watchdog.judge`),
on a process handle whose clock readings the test sets: no process runs, no time passes."""

from __future__ import annotations

import os

from stalwart.runtime import AgentProcess, ChildSpec
from stalwart.runtime._pulse import Pulse
from stalwart.runtime._watchdog import judge

INTERVAL, THRESHOLD = 0.5, 1.5


def process(**spec: object) -> AgentProcess:
    proc = AgentProcess(ChildSpec("worker", "m:C", **spec), 1, os.getpid())  # type: ignore[arg-type]
    proc.state = "running"
    return proc


async def test_a_slow_loop_that_still_sends_frames_is_left_alone() -> None:
    proc = process()
    now = proc.last_seen + 0.2  # a frame 0.2 s ago ...
    proc.pulse, proc.last_pulse = Pulse(1, lag=5.0), now  # ... though the pulse says 5 s of lag
    assert judge(proc, now, INTERVAL, THRESHOLD, check_memory=False) is None


async def test_a_stuck_loop_is_hung_with_its_lag_and_blame() -> None:
    proc = process(shutdown="brutal_kill")
    now = proc.last_seen + 3.0
    proc.pulse, proc.last_pulse = Pulse(7, lag=2.9, busy="task-9"), now
    verdict = judge(proc, now, INTERVAL, THRESHOLD, check_memory=False)
    assert verdict is not None and (verdict.reason, verdict.grace) == ("hung", 0.0)
    assert verdict.detail == "its event loop did not run for 2.9 s (threshold 1.5 s)"
    assert verdict.fields["blame"] == "task-9" and verdict.event == "agent_hung"


async def test_without_a_fresh_pulse_the_silence_decides_and_is_named() -> None:
    proc = process(shutdown=2.0)  # a frozen process: its last pulse is old
    now = proc.last_seen + 4.0
    proc.pulse, proc.last_pulse = Pulse(3, lag=0.0), proc.last_seen
    verdict = judge(proc, now, INTERVAL, THRESHOLD, check_memory=False)
    assert verdict is not None and (verdict.reason, verdict.grace) == ("hung", 2.0)
    assert verdict.detail == "nothing came from it for 4.0 s (threshold 1.5 s)"


async def test_a_task_holding_the_loop_past_its_deadline_is_a_task_timeout() -> None:
    proc = process()
    now = proc.last_seen + 0.6  # below the hang threshold, past one interval
    proc.pulse, proc.last_pulse = Pulse(2, lag=0.6, busy="t1", overdue=True), now
    verdict = judge(proc, now, INTERVAL, THRESHOLD, check_memory=False)
    assert verdict is not None and verdict.reason == "task_timeout"
    assert verdict.fields == {"agent": "worker", "pid": os.getpid(), "task": "t1", "lag_s": 0.6}


async def test_memory_is_judged_only_on_a_memory_tick() -> None:
    proc = process(memory_limit_mb=0.001)  # this test process owns more than 1 KB
    now = proc.last_seen
    assert judge(proc, now, INTERVAL, THRESHOLD, check_memory=False) is None
    verdict = judge(proc, now, INTERVAL, THRESHOLD, check_memory=True)
    assert verdict is not None and verdict.reason == "memory_limit"
    assert verdict.detail.endswith("over its memory_limit_mb of 0.001")
