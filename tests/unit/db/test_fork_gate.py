"""The fork gate (stalwart.db._fork): real threads, synchronised by events, never sleeps."""

from __future__ import annotations

import os
import threading
import time

from stalwart.db import ForkGate


def test_close_waits_for_the_thread_inside_and_keeps_new_ones_out():
    gate = ForkGate()
    entered, leave = threading.Event(), threading.Event()
    second_in = threading.Event()

    def writer() -> None:
        with gate.inside():
            entered.set()
            leave.wait(30)

    def late_writer() -> None:
        with gate.inside():
            second_in.set()

    first = threading.Thread(target=writer)
    first.start()
    assert entered.wait(30)
    assert gate.close(0.05) is False  # a thread is inside: not closed, left as it was
    closed: list[bool] = []
    closer = threading.Thread(target=lambda: closed.append(gate.close(30)))
    closer.start()
    # once the closer has registered (its own state, polled within a bound), a thread
    # arriving is kept out until the gate opens
    until = time.monotonic() + 30
    while not gate._closers and time.monotonic() < until:
        threading.Event().wait(0.001)
    assert gate._closers == 1
    late = threading.Thread(target=late_writer)
    late.start()
    assert not second_in.wait(0.1)
    leave.set()
    first.join(30)
    closer.join(30)
    assert closed == [True] and gate.inside_now == 0
    assert not second_in.is_set()  # still closed: the fork would happen here
    gate.open()
    assert second_in.wait(30)
    late.join(30)
    assert gate.waited_out == 0


def test_a_gate_never_opened_holds_a_writer_only_for_max_hold():
    gate = ForkGate(max_hold_s=0.2)
    assert gate.close(1.0)  # and never opened: a closer that died
    done = threading.Event()

    def writer() -> None:
        with gate.inside():
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert done.wait(30)  # it went on after max_hold_s
    thread.join(30)
    assert gate.waited_out == 1


def test_a_forked_child_starts_with_an_open_gate():
    from stalwart.db import FORK_GATE

    assert FORK_GATE.close(5.0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the gate it inherited closed is open and empty
        ok = FORK_GATE.inside_now == 0 and FORK_GATE._closers == 0
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    FORK_GATE.open()
    os.close(w)
    try:
        assert os.read(r, 1) == b"1"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
