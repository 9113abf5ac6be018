"""Every fault in force, with the action that undoes it.

Guarantee: a fault is registered here *before* it is applied, and its undo runs
exactly once -- when the fault's time is up, when the run ends (``finally``),
when the interpreter exits (``atexit``, which also covers SIGINT/SIGTERM since
the node turns those into a normal shutdown), whichever comes first. Undo
actions are synchronous and quick (SIGCONT a process, clear a sim fault, roll
back a lock, delete a filler file, unmount a filesystem) so that they can run
from ``atexit``. Only a SIGKILL of the tool itself skips them; what that leaves
behind is listed in ``docs/chaos.md`` (locks and proxies die with the process;
a filler file or a tmpfs mount is named ``stalwart-chaos-*`` for manual removal).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable

from stalwart.observe import get_logger

__all__ = ["UndoStack"]

_log = get_logger("stalwart.chaos")


class UndoStack:
    """Undo actions of the faults in force (thread-safe, each run once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[int, tuple[str, Callable[[], None]]] = {}
        self._next = 0
        self._registered = False

    def push(self, name: str, undo: Callable[[], None]) -> int:
        """Register ``undo`` for the fault ``name``; returns a token for :meth:`run`."""
        with self._lock:
            if not self._registered:
                atexit.register(self.run_all)
                self._registered = True
            self._next += 1
            self._actions[self._next] = (name, undo)
            return self._next

    def run(self, token: int) -> bool:
        """Undo one fault now (False if it was already undone)."""
        with self._lock:
            entry = self._actions.pop(token, None)
        if entry is None:
            return False
        name, undo = entry
        try:
            undo()
        except Exception as exc:  # an undo must not stop the others
            _log.error("chaos_undo_failed", fault=name, error=repr(exc))
        return True

    def run_all(self) -> int:
        """Undo every fault still in force, newest first; returns how many."""
        with self._lock:
            tokens = sorted(self._actions, reverse=True)
        return sum(self.run(t) for t in tokens)

    def pending(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self._actions.values()]

    def close(self) -> None:
        """Undo everything and drop the ``atexit`` hook."""
        self.run_all()
        with self._lock:
            if self._registered:
                atexit.unregister(self.run_all)
                self._registered = False
