from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from stalwart.errors import Shutdown
from stalwart.runtime import Agent

__all__ = ["ProbeAgent"]


class ProbeAgent(Agent):
    """An agent that does what its messages say: for tests of supervision and messaging.

    ``args`` (all optional): ``log`` (a file path: ``start <id>`` / ``stop <id>``
    lines are appended to it, so tests can check start and stop order),
    ``fail_init`` (init raises), ``init_delay`` (seconds of async sleep in init),
    ``terminate_delay`` (seconds ``terminate`` takes: tests of shutdown timeouts),
    ``fail_times_file`` (a file holding a count N: while N > 0, init writes N - 1
    and raises, so the next N starts fail: tests of failed restarts).

    Calls are dicts with an ``op``:

    ``echo`` → ``{"echo": value, "pid", "incarnation"}``; ``sleep`` (``s``: async
    sleep, the loop stays responsive); ``block`` (``s``: ``time.sleep``, blocks the
    loop, so heartbeats stop); ``raise`` (a ValueError); ``exit`` (``code``:
    SystemExit); ``shutdown`` (raises :class:`stalwart.errors.Shutdown` with ``reason``,
    the agent stopping itself normally); ``alloc`` (``mb``: keep that much
    memory); ``call`` (``target``,
    ``payload``, ``timeout``: call another agent through the node); ``cast``;
    ``bad_reply`` (replies with a non-JSON value); ``garbage`` (writes an
    undecodable frame, then answers); ``oversize`` (writes a frame header larger
    than any allowed frame: a poisoned stream).
    """

    def __init__(self) -> None:
        self.args: dict[str, Any] = {}
        self.hoard: list[bytes] = []
        self.casts: list[Any] = []

    async def init(self, args: Any) -> None:
        self.args = dict(args or {})
        if self.args.get("init_delay"):
            await asyncio.sleep(float(self.args["init_delay"]))
        if self.args.get("fail_init"):
            raise RuntimeError(f"{self.ctx.name} was told to fail in init")
        left = _take_one(self.args.get("fail_times_file"))
        if left:
            raise RuntimeError(f"{self.ctx.name} was told to fail {left} more start(s)")
        self._log("start")

    def _log(self, what: str) -> None:
        path = self.args.get("log")
        if path:
            with open(path, "a") as f:
                f.write(f"{what} {self.ctx.name}\n")

    async def terminate(self, reason: str) -> None:
        delay = float(self.args.get("terminate_delay", 0))
        if delay:
            await asyncio.sleep(delay)
        self._log("stop")

    async def handle_cast(self, message: Any) -> None:
        self.casts.append(message)

    async def handle_call(self, request: Any) -> Any:
        op = request.get("op", "echo") if isinstance(request, dict) else "echo"
        if op == "echo":
            value = request.get("value") if isinstance(request, dict) else request
            return {"echo": value, "pid": os.getpid(), "incarnation": self.ctx.incarnation}
        if op == "sleep":
            await asyncio.sleep(float(request["s"]))
            return {"slept": request["s"]}
        if op == "block":
            time.sleep(float(request["s"]))  # noqa: ASYNC251 - blocking the loop is the point
            return {"blocked": request["s"]}
        if op == "raise":
            raise ValueError(request.get("message", "told to raise"))
        if op == "exit":
            raise SystemExit(int(request.get("code", 1)))
        if op == "shutdown":
            raise Shutdown(str(request.get("reason", "")))
        if op == "alloc":
            self.hoard.append(b"\x01" * int(float(request["mb"]) * 2**20))  # touched pages
            return {"held_mb": sum(len(b) for b in self.hoard) / 2**20}
        if op == "call":
            return await self.ctx.call(
                request["target"], request.get("payload"), timeout=request.get("timeout")
            )
        if op == "cast":
            self.ctx.cast(request["target"], request.get("payload"))
            return {"cast": True}
        if op == "casts":
            return {"casts": self.casts}
        if op == "bad_reply":
            return {"when": time}  # a module object: not JSON
        if op == "garbage":
            self.ctx._channel.send_raw(b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")
            return {"garbage": True}
        if op == "unknown_type":
            import msgspec

            body = msgspec.msgpack.encode(["no-such-type", 1, 2])
            self.ctx._channel.send_raw(len(body).to_bytes(4, "big") + body)
            return {"unknown_type": True}
        if op == "oversize":
            self.ctx._channel.send_raw((2**31).to_bytes(4, "big"))
            await asyncio.sleep(30)
            return None
        raise ValueError(f"unknown op {op!r}")


def _take_one(path: str | None) -> int:
    """Read the count in ``path``; if > 0, write it back one less. Returns what was read."""
    if not path or not os.path.exists(path):
        return 0
    with open(path) as f:
        left = int(f.read().strip() or 0)
    if left > 0:
        with open(path, "w") as f:
            f.write(str(left - 1))
    return left
