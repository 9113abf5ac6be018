"""A module that starts a worker thread when imported and stops it before every fork, as
numpy's OpenBLAS does with its pool (a ``pthread_atfork`` handler): the fork server has
two threads until its first fork, and only one across it."""

from __future__ import annotations

import os
import threading

_stop = threading.Event()
_worker = threading.Thread(target=_stop.wait, name="pool-worker", daemon=True)
_worker.start()


def _stop_before_fork() -> None:
    _stop.set()
    _worker.join()


os.register_at_fork(before=_stop_before_fork)
