"""The write lock one SQLite file's writers share across processes, woken in turn.

A node and its agent processes write one SQLite file, each from its own writer thread
(``_sqlite.py``). SQLite serializes them with the file's lock and, when it is taken,
*sleeps and tries again*: its busy handler waits 1, 2, 5, 10, 15, 20, 25, 25, 25, 50,
50, 100 ms between tries. A write transaction holds the lock for about a millisecond
(its fsync), so a writer that finds it taken sleeps several times longer than it had to
wait. Measured on the helpdesk (`bench/agent.py`'s node, 800 tickets, 2 cores, issue
19): the triage agent's writer spent 3.9 of the run's 7.1 s in those sleeps, 368 of
them over a millisecond, the node's 2.2 s, the resolver's 1.6 s, while 0.6 of the
machine's 2 cores stood idle.

:class:`WriteLock` puts the writers of stalwart's processes in line on an ``flock``
of a file beside the database (``NAME-lock``) before they begin a write transaction:
the kernel wakes the next waiter when the holder unlocks, so SQLite's lock is free
when a writer asks for it and its busy handler never sleeps. Only write transactions
take it: in WAL mode a reader takes no lock a writer waits on.

Semantics, in the manner of a mutex shared by processes:

- ``flock`` is released by the kernel when the process that holds it dies (a SIGKILL
  mid-transaction leaves nothing held), and only then: a process stopped (SIGSTOP)
  while it holds the lock keeps the others' writes waiting until it goes on or dies,
  as SQLite's own lock did. A caller of the store never waits longer than its
  deadline (``timeouts.store``): it gets StoreUnavailable and the writer does not run
  its job later (``Writer`` drops a job whose caller's deadline passed).
- The lock is not a deadline of its own: the writer thread waits in ``flock`` as it
  waits in an fsync. Avoided on purpose: waiting with ``LOCK_NB`` and sleeps is the
  busy handler again, and a waiter thread that could give up would add two thread
  hand-offs to every contended commit, inside the time the lock is held.
- A process forked by a writer's process (a sync tool's child) closes its copy of the
  descriptor at once (``os.register_at_fork``); an exec'd one never has it
  (``O_CLOEXEC``). A child never unlocks: closing a copy leaves the parent's lock
  as it was.
- Writers that do not take it (the ``sqlite3`` shell, another program) still meet
  SQLite's lock and its busy handler, as before.
- Where the lock file cannot be created (a directory the process may not write, a
  file system without ``flock``), writers go on without it and one warning says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import weakref
from collections.abc import Iterator

from stalwart.db import _metrics
from stalwart.observe import get_logger

__all__ = ["LOCK_SUFFIX", "WriteLock"]

LOCK_SUFFIX = "-lock"
"""The lock file is the database's path with this added (``stalwart.db-lock``)."""

_log = get_logger("stalwart.db.sqlite")
_OPEN: weakref.WeakSet[WriteLock] = weakref.WeakSet()


class WriteLock:
    """Serializes write transactions on one SQLite file across processes (``flock``).

    Used by one writer (its thread, or a caller committing in its place while it is
    idle, holding the writer's connection lock: ``Writer.try_inline``), which also
    closes it when it stops: its state needs no lock of its own."""

    def __init__(self, database: str) -> None:
        self.path = database + LOCK_SUFFIX
        self._fd: int | None = None
        self._unusable = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block (wait for it first); without a usable lock file,
        run the block unlocked."""
        fd = self._descriptor()
        if fd is None:
            yield
            return
        started = time.perf_counter()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # no-deadline: see the module docstring
        except OSError as exc:  # the file system stopped honouring it: go on without
            self._give_up(exc)
            yield
            return
        _metrics.WRITE_LOCK_WAIT.observe(time.perf_counter() - started)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def try_lock(self) -> bool | None:
        """Take the lock if no other process holds it, without waiting. True: taken (the
        caller must :meth:`unlock`); False: held elsewhere; None: no usable lock file
        (go on unlocked, as :meth:`held` does). Not re-entrant within the process: the
        descriptor is the process's, so its user keeps one thread at a time here."""
        fd = self._descriptor()
        if fd is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:  # the file system stopped honouring it: go on without
            self._give_up(exc)
            return None
        return True

    def unlock(self) -> None:
        """Let go of a lock :meth:`try_lock` took."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the descriptor (the writer stopped); a later :meth:`held` opens it again."""
        self._drop()

    def _descriptor(self) -> int | None:
        if self._fd is None and not self._unusable:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                _probe(self._fd)
            except OSError as exc:
                self._give_up(exc)
            else:
                _OPEN.add(self)
        return self._fd

    def _give_up(self, exc: OSError) -> None:
        """Go on without the lock (SQLite's lock and busy handler still serialize)."""
        self._drop()
        self._unusable = True
        _log.warning(
            "sqlite_write_lock_unavailable",
            lock_file=self.path,
            error=str(exc),
            effect="writers of other processes meet SQLite's busy handler",
        )

    def _drop(self) -> None:
        """Close this process's descriptor. Never unlocks: in a forked child, a lock held
        through it is the parent's, and closing a copy leaves it held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _probe(fd: int) -> None:
    """Raise OSError if ``flock`` does not work on ``fd``'s file system. Another process
    holding the lock right now (a writer mid-commit) is an answer that it works."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def _after_fork_in_child() -> None:
    for lock in list(_OPEN):
        lock._drop()
    _OPEN.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
