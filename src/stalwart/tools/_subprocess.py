"""Run a blocking function in a forked child, so that its timeout is real.

A thread cannot be stopped: a sync tool stuck in a thread keeps running (and
holding whatever it holds) after its caller has "timed out". Here the function
runs in a child forked from this process; at the deadline the child is
SIGKILLed and reaped. The child shares nothing back but its JSON result, so a
sync tool cannot mutate the agent's memory either.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["ToolCrashed", "run_in_child"]


class ToolCrashed(Exception):
    """The child running a sync tool died without a result (signal, exit, bad result)."""


def _child(fn: Callable[..., Any], kwargs: dict[str, Any], w: int) -> None:
    try:
        value = fn(**kwargs)
        out = msgspec.msgpack.encode({"ok": True, "value": value})
    except BaseException as exc:
        out = msgspec.msgpack.encode({"ok": False, "type": type(exc).__name__, "error": str(exc)})
    view = memoryview(out)
    while view:
        written = os.write(w, view)
        view = view[written:]


async def run_in_child(fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float) -> Any:
    """Call ``fn(**kwargs)`` in a forked child; raise TimeoutError at ``timeout``.

    An exception in ``fn`` is re-raised here as ``RuntimeError("Type: message")``.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, report, and leave without running any parent cleanup
        code = 0
        try:
            os.close(r)
            _child(fn, kwargs, w)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(w)
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    done = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(r, 65536)
        except BlockingIOError:
            return
        if data:
            chunks.append(data)
        elif not done.done():
            done.set_result(None)

    os.set_blocking(r, False)
    loop.add_reader(r, readable)
    try:
        async with asyncio.timeout(timeout):
            await done
    except BaseException:  # timed out, or cancelled by an outer deadline: kill it either way
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        loop.remove_reader(r)
        os.close(r)
        # the child has exited (EOF) or was just SIGKILLed: this wait is immediate
        _, status = os.waitpid(pid, 0)  # noqa: ASYNC222 - the child is gone or dying
    if not chunks:
        raise ToolCrashed(f"the tool's process ended without a result (exit status {status})")
    try:
        result = msgspec.msgpack.decode(b"".join(chunks))
    except msgspec.DecodeError as exc:
        raise ToolCrashed(f"the tool's process sent an unreadable result: {exc}") from None
    if result.get("ok"):
        return result.get("value")
    raise RuntimeError(f"{result.get('type')}: {result.get('error')}")
