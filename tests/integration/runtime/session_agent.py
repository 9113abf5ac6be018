"""A session agent whose conversation lives in the journal, not in its process.

One durable task per session (``session-<key>``): ``init`` leases it and loads its
journal, each message is appended as a journal entry before it is answered, and
``terminate`` gives the lease back. A process stopped when idle (or killed) loses
nothing: the next incarnation reloads the same history from the store.
"""

from __future__ import annotations

import os
from typing import Any

from stalwart import Agent
from stalwart.durable import JournalEntry, Lease, Store
from stalwart.durable import open_store as _open_store


class JournaledSession(Agent):
    store: Store
    lease: Lease
    history: list[str]

    async def init(self, args: Any) -> None:
        self.store = await _open_store(args["store"])
        task_id = "session-" + self.ctx.name.replace(":", "-")
        if await self.store.get_task(task_id) is None:
            await self.store.create_task("session", {}, task_id=task_id)
        # force: a predecessor that was killed cannot give its lease back; its fencing
        # token is bumped, so it could not write any more
        lease = await self.store.acquire(self.ctx.name, 3600.0, task_id=task_id, force=True)
        assert lease is not None, task_id
        self.lease = lease
        self.history = [str(e.value) for e in (await self.store.load_journal(task_id)).entries]

    async def handle_call(self, request: Any) -> Any:
        entry = JournalEntry(len(self.history), "step", "message", str(request["text"]))
        await self.store.append(self.lease, [entry])  # durable before it is answered
        self.history.append(entry.value)
        return {"pid": os.getpid(), "history": list(self.history)}

    async def terminate(self, reason: str) -> None:
        await self.store.release(self.lease)
        await self.store.close()
