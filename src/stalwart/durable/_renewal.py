"""Lease renewal in rounds: one write per runner per tick, whatever its task count.

A runner renews the lease of every task it runs every third of ``lease_seconds``.
Renewing each lease alone costs one store write per task per tick: a process
running 1,000 slow tasks on a 4 s lease wrote 750 times a second just to stay
alive, and under that load the renewals themselves timed out and the leases were
abandoned. Instead every task's heartbeat wakes on the same tick (multiples of the
interval on the runner's clock) and joins one *round*: the first to arrive leads
it, lets the others who woke on that tick join (one turn of the event loop), then
renews all of their leases in one write (:meth:`Store.heartbeat_many`, each lease
still fenced by its own token). Each member learns its own answer: renewed, or
lost (that task alone stops, as before).

What was avoided: a background renewal task per runner would need a lifetime of
its own (started, stopped, supervised) that a Runner does not have; a round led by
whichever heartbeat comes first needs none.

The round's write belongs to the round, not to its leader. A leader is cancelled
often: its task ended (the runner cancels the heartbeat of a finished task), or its
own deadline passed. When the write ran inside the leader, that cancellation failed
the renewal of every member of the round: under load, with tasks ending all the
time, rounds failed tick after tick and the runner abandoned the leases of tasks
that were doing well (a node keeping 1,000 slow tasks in flight lost about one
lease per task and ran each task's steps again). Now the leader starts the write as
a task of its own, kept by :class:`Renewals` until it ends, and waits for it like
every member; a member that stops waiting (cancelled, or past its deadline) leaves
the write to the others. The write ends on its own: it is one statement per 200
leases through the store, which bounds its operations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math

from stalwart.clock import Clock
from stalwart.durable import _metrics
from stalwart.durable._protocol import Lease, Store
from stalwart.errors import StoreError

__all__ = ["CALM_TICKS", "LEASE_STRETCH", "Renewals"]

LEASE_STRETCH = 3
"""A busy runner's renewals ask for this many times ``lease_seconds``."""
CALM_TICKS = 20
"""Ticks of renewals back in time before a stretched lease is halved (80 s at 4 s)."""


@dataclasses.dataclass(slots=True)
class _Round:
    leases: dict[str, Lease]
    done: asyncio.Future[dict[str, Lease | None]]
    seconds: float
    """The lease this round asks for."""
    opened: float
    """When it opened (the clock's monotonic time)."""


class Renewals:
    """Batches one runner's lease renewals into one store write per tick."""

    def __init__(self, store: Store, clock: Clock, lease_seconds: float) -> None:
        self._store = store
        self._clock = clock
        self._lease_seconds = lease_seconds
        self.interval = lease_seconds / 3
        self.max_seconds = lease_seconds * LEASE_STRETCH
        """The longest lease a round asks for (see :attr:`asking`)."""
        self.asking = lease_seconds
        """The lease the next round asks for: ``lease_seconds`` on a calm runner; the
        most, ``max_seconds``, from a round that came back later than half a tick, a
        lagging event loop or a burst of claims (:meth:`stretch`) on, halved back after
        each ``CALM_TICKS`` ticks of rounds back in time."""
        self._calm_since: float | None = None
        self._open: _Round | None = None
        self._writing: set[asyncio.Task[dict[str, Lease | None]]] = set()
        """Rounds' writes in flight (a task is kept here until it ends)."""
        self.writes = 0
        """Rounds written (each one store write per 200 leases): for tests and benches."""

    def lagging(self, seconds: float) -> None:
        """The process's event loop took ``seconds`` for one turn: past half a tick,
        renewals will come back late too, so the next round asks for the longest lease
        now rather than after a late round (the caller measures: a claim loop)."""
        if seconds > self.interval / 2:
            self.stretch()

    def stretch(self) -> None:
        """Ask for the longest lease from the next round on: this runner is, or is about
        to be, busy (a late round, a lagging loop, a burst of claimed tasks whose model
        answers will all come back together)."""
        self.asking = self.max_seconds
        self._calm_since = None
        _metrics.LEASE_ASKED.set(self.asking)

    def _calmer(self, now: float) -> None:
        """A round came back in time: after ``CALM_TICKS`` ticks of those, halve."""
        if self.asking <= self._lease_seconds:
            return
        if self._calm_since is None:
            self._calm_since = now
        elif now - self._calm_since >= CALM_TICKS * self.interval:
            self.asking = max(self._lease_seconds, self.asking / 2)
            self._calm_since = now
            _metrics.LEASE_ASKED.set(self.asking)

    def until_next_tick(self) -> float:
        """Seconds to the next shared tick, so that every heartbeat wakes together."""
        now = self._clock.monotonic()
        tick = (math.floor(now / self.interval) + 1) * self.interval
        return max(tick - now, 0.0)

    async def renew(self, lease: Lease, timeout: float | None = None) -> Lease | None:
        """Renew ``lease`` in this tick's round: the renewed lease, or None if lost.

        Raises what the store raised (as a :class:`StoreError`), or TimeoutError when
        the round's write did not end within ``timeout`` seconds; the caller retries on
        its next tick. A write that ended in time but whose answer this task had not
        yet seen when the deadline fired counts as renewed: on a busy event loop the
        deadline's timer runs in the same turn as the write's answer, before this task
        resumes, and failing such a renewal made live tasks give up leases the store
        had just renewed (issue 19).
        """
        return (await self.renew_for(lease, timeout))[0]

    async def renew_for(
        self, lease: Lease, timeout: float | None = None
    ) -> tuple[Lease | None, float]:
        """:meth:`renew`, and the lease's length in seconds, counted from the call."""
        joined = self._open
        lead = joined is None
        if joined is not None:
            joined.leases[lease.task_id] = lease
        else:
            future = asyncio.get_running_loop().create_future()
            opened = self._clock.monotonic()
            joined = _Round({lease.task_id: lease}, future, self.asking, opened)
            self._open = joined
        try:
            async with asyncio.timeout(timeout):
                answer = await self._take_part(joined, lease, lead=lead)
        except TimeoutError:
            done = joined.done
            if not done.done() or done.cancelled() or done.exception() is not None:
                raise
            answer = done.result()  # renewed in time; seen late
        return answer.get(lease.task_id), joined.seconds

    async def _take_part(
        self, joined: _Round, lease: Lease, *, lead: bool
    ) -> dict[str, Lease | None]:
        """Lead ``joined`` (start its write after one turn) or wait for it: its answer."""
        if lead:
            try:
                await asyncio.sleep(0)  # the heartbeats woken on this tick join now
            except asyncio.CancelledError:
                del joined.leases[lease.task_id]  # stopped first: the others still renew
                raise
            finally:
                self._open = None
                if joined.leases:
                    self._write(joined)
                else:
                    joined.done.cancel()
        # shielded: one member's cancellation (its task ended) or timeout must not cancel
        # the others' answer
        return await asyncio.shield(joined.done)

    def _write(self, led: _Round) -> None:
        """Start the round's write; its end settles ``led.done`` for every member."""
        write = asyncio.ensure_future(
            self._store.heartbeat_many(list(led.leases.values()), led.seconds)
        )
        self._writing.add(write)

        def settle(done: asyncio.Task[dict[str, Lease | None]]) -> None:
            self._writing.discard(done)
            if done.cancelled():
                failure: BaseException | None = asyncio.CancelledError()
            else:
                failure = done.exception()
            now = self._clock.monotonic()
            if failure is None:
                self.writes += 1
                led.done.set_result(done.result())
            if failure is None and now - led.opened <= self.interval / 2:
                self._calmer(now)
            else:  # late, or failed: a busy loop or store
                self.stretch()
            if failure is None:
                return
            led.done.set_exception(
                StoreError(f"lease renewal round failed: {failure!r}; retried next tick")
            )
            led.done.exception()  # retrieved: members who already left need not see it

        write.add_done_callback(settle)
