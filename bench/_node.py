"""A bench's node set up as ``stalwart run`` sets up its own (``cli/_main.py:_run``).

``stalwart run`` writes JSON log lines (every agent's line taken in without a second
redaction: ``observe.ingest_redacted``), redacts with the process redactor and knows
the local vault's secrets. A bench that left logging unconfigured measured another
pipeline: each agent's line parsed again, redacted again and printed by structlog's
console renderer. Here the lines go to a file, as a container's stderr goes to its log
collector, so that what the bench prints stays readable and the write still costs what
it costs.
"""

from __future__ import annotations

import pathlib

from stalwart.guard import install_redactor, learn_vault_secrets
from stalwart.observe import configure_logging

__all__ = ["log_like_run"]


def log_like_run(node_id: str, path: pathlib.Path) -> None:
    """Configure this process's logging as ``stalwart run`` does, into ``path``. The file
    stays open for the rest of the process: whatever it logs after the node stopped (the
    next round, a baseline) must still have somewhere to go."""
    stream = path.open("a", encoding="utf-8")
    configure_logging(json=True, node=node_id, stream=stream)
    install_redactor()
    learn_vault_secrets()
