"""Imported by an app node's fork server before it forks agent processes (``app_node``
preloads it): the output redactor's named-entity model, the fast tier's lists and
dictionary and the token counter load once there, and every agent process forked after
has them (shared copy-on-write until Python's reference counts touch their pages).

Without it each agent process loaded them itself: 1-3 s of CPU per process for the model
(at its first task's output, while it was already serving tasks), 0.5-3 s for the
counter, and about 0.25 s for the lists, at its first log line, on its event loop. A
model or a list that fails to load (a bad ``STALWART_NER_MODEL``) is left to the agent,
which reports it where it redacts; the fork server must start regardless.

The model imports numpy, whose OpenBLAS starts one idle worker thread; OpenBLAS stops its
workers before every ``fork`` (its ``pthread_atfork`` handler), so the fork server is
single-threaded again at the first fork, and an agent's first BLAS call starts its own
(checked: after a fork both processes have one thread, and the child's model works).
"""

from __future__ import annotations

import contextlib

from stalwart.durable import default_counter
from stalwart.guard import warm_fast_tier, warm_output_redactor

__all__ = ["warm"]


def warm() -> None:
    """Load the output tier's model, the fast tier's lists and the default token counter
    (blocking)."""
    # a model (or a data file) that fails to load is raised again, in context, where the
    # agent redacts: the fork server must start regardless
    with contextlib.suppress(Exception):
        warm_output_redactor()
    with contextlib.suppress(Exception):
        warm_fast_tier()
    default_counter()  # never raises: it degrades to the approximate counter


warm()
