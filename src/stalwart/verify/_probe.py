"""A minimal agent for the verifications' own test processes (never a user's agent)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from stalwart.runtime import Agent

__all__ = ["VerifyProbe"]


class VerifyProbe(Agent):
    """Answers ``{"op": "echo"}`` with its pid, ``{"op": "sleep", "s": n}`` after n seconds.

    ``{"op": "hold", "bytes": n}`` allocates and touches ``n`` more bytes and keeps them
    (its resident memory really grows: MA-3's MemoryGrowth rule); ``{"op": "release"}``
    drops them. Both answer with the bytes held.
    """

    async def handle_call(self, request: Any) -> Any:
        if isinstance(request, dict) and request.get("op") == "sleep":
            await asyncio.sleep(float(request.get("s", 0)))
        held: list[bytes] = self.__dict__.setdefault("_held", [])
        if isinstance(request, dict) and request.get("op") == "hold":
            left = int(request.get("bytes", 0))
            while left > 0:  # in chunks, yielding: the heartbeat goes on (not taken as hung)
                chunk = min(left, 8 * 2**20)
                held.append(b"\x01" * chunk)  # every page written
                left -= chunk
                await asyncio.sleep(0)
        if isinstance(request, dict) and request.get("op") == "release":
            held.clear()
        return {"pid": os.getpid(), "held_bytes": sum(len(b) for b in held)}
