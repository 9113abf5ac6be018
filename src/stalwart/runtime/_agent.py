"""The behaviour an agent process implements (OTP's gen_server, for agents)."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import time
from typing import TYPE_CHECKING, Any, ClassVar

from stalwart.errors import CallTimeout, InvalidMessage, NoProcess, RemoteError
from stalwart.observe import current_traceparent
from stalwart.runtime._messages import CallResult, OutCall, OutCast, Publish, check_json

if TYPE_CHECKING:
    from stalwart.runtime._channel import Channel

__all__ = ["CALL_DEADLINE", "Agent", "AgentContext"]


class Agent:
    """Subclass this to define an agent. One instance lives in its own OS process.

    The runtime calls, in the agent's process:

    - ``await init(args)`` once, before any message. If it raises, the start
      fails (:class:`stalwart.errors.StartError` in the supervisor).
    - ``await handle_call(request)`` for each :meth:`Runtime.call`; its return
      value (JSON-compatible) is the reply. An ``Exception`` it raises goes back
      to the caller as :class:`stalwart.errors.RemoteError` and the agent keeps
      running; a ``BaseException`` (``SystemExit``, a ``Shutdown``) ends the
      process, which its supervisor then handles.
    - ``await handle_cast(message)`` for each cast; no reply.
    - ``await terminate(reason)`` on a graceful stop, before the process exits 0.

    Messages are handled one at a time, in arrival order (a mailbox), unless
    the class sets ``max_concurrency`` higher. A call whose caller has already
    given up (its deadline passed while it waited in the mailbox) is skipped.
    A handler runs under its call's deadline: it is cancelled when the caller
    stops waiting. Blocking the event loop (CPU work, ``time.sleep``) stops the
    agent's heartbeats, and an agent silent past the hang threshold is killed.
    """

    max_concurrency: ClassVar[int] = 1
    ctx: AgentContext

    async def init(self, args: Any) -> None:
        """Prepare state from ``args`` (the ChildSpec's ``args``)."""

    async def handle_call(self, request: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not handle calls")

    async def handle_cast(self, message: Any) -> None:
        """Handle a one-way message. The default ignores it."""

    async def terminate(self, reason: str) -> None:
        """Clean up on a graceful stop. Must be quick: the stop is bounded by ``shutdown``."""


class AgentContext:
    """What an agent knows about itself, and its way to talk to other agents.

    ``call`` and ``cast`` go through the node by registered name; processes
    never share memory. Every call has a deadline: ``timeout`` if given, else
    the node's ``agent_call`` default, and never longer than what is left of
    the call this agent is handling now (deadlines propagate).
    """

    def __init__(
        self,
        *,
        name: str,
        incarnation: int,
        channel: Channel,
        default_timeout: float,
    ) -> None:
        self.name = name
        self.incarnation = incarnation
        self._channel = channel
        self._default_timeout = default_timeout
        self._refs = itertools.count(1)
        self._pending: dict[int, asyncio.Future[CallResult]] = {}

    async def call(self, target: str, payload: Any, *, timeout: float | None = None) -> Any:
        check_json(payload)
        seconds = self._default_timeout if timeout is None else timeout
        task_deadline = CALL_DEADLINE.get()
        if task_deadline is not None:
            seconds = min(seconds, task_deadline - time.monotonic())
        if seconds <= 0:
            raise CallTimeout(
                f"call to {target!r} not made: the enclosing deadline already passed",
                target=target,
            )
        ref = next(self._refs)
        fut: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        self._pending[ref] = fut
        self._channel.send(
            OutCall(
                ref=ref,
                target=target,
                payload=payload,
                timeout=seconds,
                trace=current_traceparent(),
            )
        )
        try:
            async with asyncio.timeout(seconds):
                result = await fut
        except TimeoutError:
            raise CallTimeout(
                f"call to {target!r} got no reply within {seconds:.3f} s", target=target
            ) from None
        finally:
            self._pending.pop(ref, None)
        if result.ok:
            return result.payload
        raise _error_from(result.error_type, result.error, target)

    def cast(self, target: str, message: Any) -> None:
        """Send ``message`` to ``target``; never fails (an unknown target drops it, counted)."""
        check_json(message)
        self._channel.send(OutCast(target=target, payload=message, trace=current_traceparent()))

    def publish(self, name: str, **fields: Any) -> None:
        """Emit event ``name`` on the node's event bus (never fails, never waits).

        Only ``task.*`` names: an agent speaks about its tasks, not for the node. The
        node adds ``agent`` (this agent's name)."""
        if not name.startswith("task."):
            raise ValueError(f"an agent publishes task.* events only, not {name!r}")
        check_json(fields)
        self._channel.send(Publish(name=name, fields=fields))

    def _resolve(self, result: CallResult) -> None:
        fut = self._pending.get(result.ref)
        if fut is not None and not fut.done():
            fut.set_result(result)


CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "stalwart_call_deadline", default=None
)
"""Monotonic deadline of the call being handled in this task (nested calls inherit it)."""


def _error_from(error_type: str, message: str, target: str) -> Exception:
    if error_type == "NoProcess":
        return NoProcess(message, target=target)
    if error_type == "CallTimeout":
        return CallTimeout(message, target=target)
    if error_type == "InvalidMessage":
        return InvalidMessage(message)
    return RemoteError(
        f"{target!r} raised {error_type}: {message}", target=target, remote_type=error_type
    )
