"""A minimal agent for the verifications' own test supervisors (never a user's agent)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from stalwart.runtime import Agent

__all__ = ["VerifyProbe"]


class VerifyProbe(Agent):
    """Answers ``{"op": "echo"}`` with its pid, ``{"op": "sleep", "s": n}`` after n seconds."""

    async def handle_call(self, request: Any) -> Any:
        if isinstance(request, dict) and request.get("op") == "sleep":
            await asyncio.sleep(float(request.get("s", 0)))
        return {"pid": os.getpid()}
