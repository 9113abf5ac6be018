"""The OpenAI Agents SDK support example with a kill switch at step boundaries (tests, bench).

With ``OAI_KILL_DIR`` set, an agent process that has just committed a journal record
chosen by ``OAI_KILL_EVERY`` (the record's task and position hash to 0 modulo it) and
not chosen before asks to be killed: it writes ``<dir>/kill-<pid>-<task>-<seq>`` and
holds its event loop until the test (or bench) SIGKILLs it. So every kill lands on a
step boundary: the step is durable, the next has not started, no model request is in
flight. ``OAI_KILL_MAX`` bounds the kills of a run. Without the variable nothing
changes. One task at a time per process (``max_tasks=1``), so no other task of the
process is mid-call when it dies.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import time
from typing import Any

from examples.openai_agents_support.app import SUPPORT, app

from stalwart.durable import Context

KILL_DIR = os.environ.get("OAI_KILL_DIR")


def _chosen(task_id: str, seq: int) -> bool:
    every = int(os.environ.get("OAI_KILL_EVERY", "3"))
    digest = hashlib.sha256(f"{task_id}:{seq}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % every == 0


def _install(root: pathlib.Path) -> None:
    record = Context._record
    limit = int(os.environ.get("OAI_KILL_MAX", "1000"))

    async def killing_record(self: Context, seq: int, kind: str, name: str, value: Any) -> None:
        await record(self, seq, kind, name, value)
        mark = root / f"chosen-{self.task_id}-{seq}"
        if not _chosen(self.task_id, seq) or mark.exists():
            return
        if len(list(root.glob("chosen-*"))) >= limit:
            return
        mark.touch()
        (root / f"kill-{os.getpid()}-{self.task_id}-{seq}").touch()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the whole process stops here until killed
            time.sleep(0.01)

    Context._record = killing_record  # type: ignore[method-assign]


if KILL_DIR:
    _install(pathlib.Path(KILL_DIR))

# every kill is a restart: room for many within the supervisor's period
app = dataclasses.replace(
    app, agents=[dataclasses.replace(SUPPORT, max_tasks=1)], intensity=100, period=60
)
