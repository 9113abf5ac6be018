"""A model client answering from a script, passed where a model chain is (no server)."""

from __future__ import annotations

import asyncio
from typing import Any

from stalwart.llm import Message, ModelRequest, ModelResponse, Usage


class Scripted:
    """A model client answering from a script; ``hang_at`` never answers that call."""

    name = "scripted:model"

    def __init__(self, replies: list[Message], hang_at: int | None = None) -> None:
        self.replies = replies
        self.hang_at = hang_at
        self.calls = 0
        self.requests: list[ModelRequest] = []
        self.hanging = asyncio.Event()

    async def complete(self, request: ModelRequest, *, timeout: float | None = None) -> Any:
        self.calls += 1
        self.requests.append(request)
        if self.calls == self.hang_at:
            self.hanging.set()
            await asyncio.Event().wait()  # until the run is cancelled (the "kill")
        message = self.replies[self.calls - 1]
        return ModelResponse(self.name, message, "stop", Usage(10, 5), 0.0, 0.0)

    async def aclose(self) -> None:
        pass
