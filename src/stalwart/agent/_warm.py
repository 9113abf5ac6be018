"""Imported by an app node's fork server before it forks agent processes (``app_node``
preloads it): the output redactor's named-entity model and the token counter load once
there, and every agent process forked after shares them copy-on-write.

Without it each agent process loaded both itself: 1-3 s of CPU per process for the model
(at its first task's output, while it was already serving tasks) and 0.5-3 s for the
counter. A model that fails to load (a bad ``STALWART_NER_MODEL``) is left to the agent,
which reports it where it redacts; the fork server must start regardless.

The model imports numpy, whose OpenBLAS starts one idle worker thread; OpenBLAS stops its
workers before every ``fork`` (its ``pthread_atfork`` handler), so the fork server is
single-threaded again at the first fork, and an agent's first BLAS call starts its own
(checked: after a fork both processes have one thread, and the child's model works).
"""

from __future__ import annotations

import contextlib

from stalwart.durable import default_counter
from stalwart.guard import warm_output_redactor

__all__ = ["warm"]


def warm() -> None:
    """Load the output tier's model and the default token counter (blocking)."""
    # a model that fails to load is raised again, in context, where the agent redacts
    with contextlib.suppress(Exception):
        warm_output_redactor()
    default_counter()  # never raises: it degrades to the approximate counter


warm()
