"""Forking a process whose threads use SQLite, without the child inheriting a held lock.

``fork()`` copies only the thread that calls it. A lock another thread held at that
instant stays held in the child, by nobody, forever. SQLite takes process-wide mutexes
for its own bookkeeping (with memory statistics on, the default, one around every
``sqlite3_malloc``), so a child forked while a writer thread was inside SQLite blocks on
a futex at its first SQLite call: caught in an agent whose sync tool opened a database
in its forked child (``docs/runtime.md``, *Forking*: 45 forks in 500 with a writer
committing without pause, ``gdb`` showing ``sqlite3Malloc`` waiting on
``pthread_mutex_lock``).

:data:`FORK_GATE` closes that window for the threads this package owns: every writer
thread holds it (shared) around the SQLite calls it makes, and a caller about to fork
closes it (waits until no thread is inside, and keeps new ones out) for the length of
the ``fork()``. A thread kept out waits at most :data:`MAX_HOLD_S`, then goes on (so a
closer that never opens cannot stop the store); a fork after that is back to the old
odds, which the forked child's own deadline bounds. SQLite used from threads of the
application's own is not covered.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

__all__ = ["FORK_GATE", "MAX_HOLD_S", "ForkGate"]

MAX_HOLD_S = 2.0
"""The longest a thread entering SQLite waits for a closed gate before it goes on."""


class ForkGate:
    """Shared by the threads that call into SQLite; closed (exclusively) around a fork."""

    def __init__(self, max_hold_s: float = MAX_HOLD_S) -> None:
        self.max_hold_s = max_hold_s
        self._cond = threading.Condition(threading.Lock())
        self._inside = 0
        self._closers = 0
        self.waited_out = 0
        """Entries that gave up waiting for a closed gate (each allowed a risky fork)."""

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Held by a thread while it calls into SQLite; waits while a fork is being made."""
        with self._cond:
            if self._closers:
                until = time.monotonic() + self.max_hold_s
                while self._closers:
                    left = until - time.monotonic()
                    if left <= 0:
                        self.waited_out += 1
                        break
                    self._cond.wait(left)
            self._inside += 1
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                if not self._inside:
                    self._cond.notify_all()

    def try_enter(self) -> bool:
        """Enter without waiting: False while a fork is being made (the caller goes the
        way that may wait, its writer thread). True: the caller must :meth:`leave`."""
        with self._cond:
            if self._closers:
                return False
            self._inside += 1
            return True

    def leave(self) -> None:
        """Undo one successful :meth:`try_enter`."""
        with self._cond:
            self._inside -= 1
            if not self._inside:
                self._cond.notify_all()

    def close(self, timeout: float) -> bool:
        """Keep new threads out and wait (up to ``timeout``) until none is inside.

        True: closed, and the caller must :meth:`open` it after its fork. False: some
        thread stayed inside for ``timeout``; the gate is left as it was."""
        with self._cond:
            self._closers += 1
            if self._cond.wait_for(lambda: self._inside == 0, max(0.0, timeout)):
                return True
            self._closers -= 1
            self._cond.notify_all()
            return False

    def open(self) -> None:
        """Undo one successful :meth:`close`."""
        with self._cond:
            self._closers = max(0, self._closers - 1)
            self._cond.notify_all()

    @property
    def inside_now(self) -> int:
        """Threads inside SQLite now (for tests and diagnostics)."""
        with self._cond:
            return self._inside

    def _reset_in_child(self) -> None:
        # the child has one thread, the forking one: nobody is inside, nobody closes, and
        # the condition's lock may have been copied held by another thread of the parent
        self._cond = threading.Condition(threading.Lock())
        self._inside = 0
        self._closers = 0


FORK_GATE = ForkGate()
"""The process's gate: :class:`stalwart.db._sqlite.Writer` threads enter it."""
os.register_at_fork(after_in_child=FORK_GATE._reset_in_child)
