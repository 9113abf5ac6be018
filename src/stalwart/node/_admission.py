"""How many tasks wait, for admission: one store read shared by concurrent submissions.

Every submission checks the admission limits (``max_pending``, ``max_pending_node``)
against the store's count of waiting tasks. Read once per submission, a burst of
them queued that many reads: 2,000 submissions at once made a node's reads wait past
their 10 s deadline, and counted 0 waiting for every one of them while the burst's own
tasks were not yet written, so none was refused.

Here the submissions of one node that arrive while a count is being read wait for that
read instead of making their own (at most one read in flight per set of counts). On top
of what the read found counts every task this node admitted whose write had not
completed when the read began, and every one admitted since. Concurrent submissions
are decided one after another, with no wait between the check and the count, so within
this node's submissions the limit holds exactly; a task the read saw and that is also
counted on top of it (written while the read ran) counts twice until the next read:
refusing a little early, never admitting past the limit. Other nodes' submissions are
seen at the next read, as before.

What was avoided: a cached count refreshed on a timer (a task that waits would go
unseen for the timer's length, and the timer is a task someone must own), and a
background reader task (the first submission reads; if it is cancelled, the next one
waiting reads again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["WaitingCounts"]

Who = tuple[str | None, ...]
"""The counts asked for: an agent's name, or None for every agent's."""


class WaitingCounts:
    """Waiting-task counts for admission, one read at a time per set of counts."""

    def __init__(self, read: Callable[[list[str | None]], Awaitable[list[int]]]) -> None:
        """``read(who)``: the store's counts of waiting tasks, one per entry of ``who``."""
        self._read = read
        self._flights: dict[Who, asyncio.Future[tuple[list[int], list[int]]]] = {}
        self._admitted: dict[str | None, int] = {}  # per agent (None: every agent's)
        self._unwritten: dict[str | None, int] = {}  # admitted, write not completed

    async def counts(self, who: Sequence[str | None]) -> list[int]:
        """The waiting counts for ``who`` as of now: a read (this caller's, or the one in
        flight), plus what was admitted since it began. Decide on them and call
        :meth:`admitted` before awaiting anything else."""
        key = tuple(who)
        while True:
            flight = self._flights.get(key)
            if flight is None:
                found, at = await self._lead(key)
                break
            try:
                # shielded: a waiter's cancellation must not cancel the leader's read
                found, at = await asyncio.shield(flight)
                break
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if flight.cancelled() and (task is None or not task.cancelling()):
                    continue  # the reader was cancelled, not this caller: read again
                raise
        return [n + self._admitted.get(w, 0) - a for w, n, a in zip(key, found, at, strict=True)]

    def admitted(self, who: Sequence[str | None]) -> None:
        """One more task admitted, counted for each of ``who`` (the agent's own count and
        every agent's); call :meth:`written` once its write is over, stored or not."""
        for w in who:
            self._admitted[w] = self._admitted.get(w, 0) + 1
            self._unwritten[w] = self._unwritten.get(w, 0) + 1

    def written(self, who: Sequence[str | None]) -> None:
        """The write of a task :meth:`admitted` for ``who`` is over: reads from now on
        see it (or it failed and there is nothing to see)."""
        for w in who:
            self._unwritten[w] -= 1

    async def _lead(self, key: Who) -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        flight: asyncio.Future[tuple[list[int], list[int]]] = loop.create_future()
        # a failed read nobody else waited for is not an unretrieved exception
        flight.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._flights[key] = flight
        # what this read may miss is counted on top: admitted since it began (as the
        # difference from here), and admitted before but not yet written (as a negative
        # start, so that they count too)
        at = [self._admitted.get(w, 0) - self._unwritten.get(w, 0) for w in key]
        try:
            found = await self._read(list(key))
        except Exception as exc:
            flight.set_exception(exc)  # the waiters get the store's error too
            raise
        except BaseException:
            flight.cancel()  # the waiters read again
            raise
        finally:
            del self._flights[key]
        flight.set_result((found, at))
        return found, at
