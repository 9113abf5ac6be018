"""An agent that publishes events, then says so through a FIFO the test reads (outside
the node's channel), as a task agent publishes its streamed text before it journals."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from stalwart import Agent


class Publisher(Agent):
    async def handle_cast(self, message: Any) -> None:
        for i in range(int(message["events"])):
            self.ctx.publish("task.piece", task_id="t", n=i)
        _signal(message["fifo"], b"published")

    async def handle_call(self, request: Any) -> Any:
        if "block" in request:  # its loop stops: nothing of the process answers
            _signal(request["fifo"], b"blocking")
            time.sleep(float(request["block"]))
            return "blocked"
        await asyncio.sleep(float(request["sleep"]))  # a long handler: the mailbox is busy
        return "slept"


def _signal(fifo: str, what: bytes) -> None:
    fd = os.open(fifo, os.O_WRONLY)  # the test holds the read end open
    try:
        os.write(fd, what)
    finally:
        os.close(fd)
