"""Run a blocking function in a forked child, so that its timeout is real.

A thread cannot be stopped: a sync tool stuck in a thread keeps running (and
holding whatever it holds) after its caller has "timed out". Here the function
runs in a child forked from this process; at the deadline the child is
SIGKILLed and reaped. The child shares nothing back but its JSON result, so a
sync tool cannot mutate the agent's memory either.

The agent forking it has threads (its SQLite writers, its pulse), so two rules keep the
child from outliving it or blocking forever (``docs/runtime.md``, *Forking*):

- the fork is made with the database kernel's fork gate closed
  (:data:`stalwart.db.FORK_GATE`): no writer thread is inside SQLite, so the child
  inherits none of SQLite's locks held (children forked at such a moment blocked on a
  futex at their first SQLite call);
- the child's first act is to ask for SIGKILL when the agent exits, then to check the
  agent is still its parent: a tool child once outlived its killed agent, orphaned and
  blocked, for the rest of the machine's life.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
from collections.abc import Callable
from typing import Any

import msgspec

from stalwart.db import FORK_GATE
from stalwart.runtime._forkserver import die_with_parent

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


_GATE_WAITER = concurrent.futures.ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="stalwart-fork-gate"
)
"""Where a fork waits for the writer threads: its own thread (started at its first use),
not the loop's default executor, which long ``to_thread`` waits can fill, holding a
sync tool up to its timeout."""


async def _close_gate(loop: asyncio.AbstractEventLoop, timeout: float) -> bool:
    """Close the fork gate, waiting (off the loop, within ``timeout``) for the writer
    threads to leave SQLite. True: closed, open it after the fork. A caller cancelled
    while a thread waits still has the gate opened, once that wait ends."""
    if FORK_GATE.close(0.0):  # no writer inside SQLite now (the usual case): no wait
        return True
    waiting = loop.run_in_executor(_GATE_WAITER, FORK_GATE.close, timeout)
    try:
        return await asyncio.shield(waiting)
    except BaseException:
        waiting.add_done_callback(_open_if_closed)
        raise


def _open_if_closed(waited: asyncio.Future[bool]) -> None:
    if not waited.cancelled() and waited.exception() is None and waited.result():
        FORK_GATE.open()


async def run_in_child(fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float) -> Any:
    """Call ``fn(**kwargs)`` in a forked child; raise TimeoutError at ``timeout``.

    An exception in ``fn`` is re-raised here as ``RuntimeError("Type: message")``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    if not await _close_gate(loop, timeout):
        raise TimeoutError(f"a SQLite writer thread stayed busy for {timeout:g} s: no fork")
    parent = os.getpid()
    r, w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: run, report, and leave without running any parent cleanup
            code = 0
            try:
                os.close(r)
                if die_with_parent(parent):  # else the agent is gone: nobody reads a result
                    _child(fn, kwargs, w)
            except BaseException:
                code = 1
            os._exit(code)
    except OSError:  # no fork (out of memory, too many processes)
        os.close(r)
        raise
    finally:
        FORK_GATE.open()
        os.close(w)
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
        async with asyncio.timeout_at(deadline):
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
