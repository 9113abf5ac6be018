"""How an agent process takes its work: it claims its agent's runnable tasks from the
store, paced by how fast its event loop starts them, and takes back on start the tasks
its previous incarnation held.

:class:`ClaimLoop` is the claiming half of :class:`~stalwart.agent.TaskAgent`, which
inherits it and runs what is claimed (``_track``, ``_execute``, ``_run_forced``). A
claim never takes more than the process starts before the claimed leases need renewing
(issue 19); see :meth:`ClaimLoop._claim_some`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from stalwart.agent._spec import AgentDef, App
from stalwart.durable import Lease, Runner, Store, TaskResult
from stalwart.errors import LeaseLost, StoreError
from stalwart.observe import catalog, get_logger

__all__ = ["ClaimLoop"]

_log = get_logger("stalwart.agent")

BURST = 64
"""Tasks claimed (or resumed) at once that make this process's renewals ask for longer
leases at once (see ``durable/_renewal.py``): their model answers come back together,
a load that arrives before a late renewal could ask for more (issue 19). Fewer, as on a
node with small ``max_tasks``, keep the plain lease, and so a dead node's quick
failover."""
LAG_SHARE = 16
"""The share of the lease its renewals ask for that one turn of an agent process's event
loop may take, and so the starts of one claim's tasks: a loop that lags more claims
nothing (it is saturated), and a claim takes no more tasks than the process was measured
to start in that long (see :meth:`ClaimLoop._claim_some`). A renewal round takes a few
turns of the loop and must end within a third of the lease."""


class ClaimLoop:
    """Claims and paces the tasks of an agent process (see the module docstring); the
    state below is set by the agent's ``init``."""

    scan_interval = 0.25
    """Wait between two claims while nothing wakes the claimer: after a claim that found
    no task (each is a write transaction), or at capacity."""
    first_claim = 16
    """Most tasks the first claim of a process takes; later claims double or halve it
    by how fast the claimed tasks start (see :meth:`_claim_some`)."""

    defn: AgentDef
    app: App
    store: Store
    owner: str
    """The leases' owner: ``node/agent``."""
    runner: Runner
    running: dict[str, asyncio.Task[TaskResult | None]]
    unstarted: dict[str, Lease]
    """Claimed, but its runner has not started yet: if it is cancelled now, no runner
    will give the lease back, so ``terminate`` does."""
    wake: asyncio.Event
    """Set to claim now rather than at the next poll."""
    claim_batch: int
    """Most tasks the next claim takes (paced: see :meth:`_claim_some`)."""
    start_cost: float | None
    """CPU seconds of this process's event loop thread per task the last paced claim
    took to start (None: none measured yet); bounds the next claim (see
    :meth:`_claim_some`)."""
    starting: set[str]
    """Claimed here, not yet running their workflow (their journals load)."""
    started: asyncio.Event
    """Set whenever ``starting`` empties."""

    # -- what the agent does with the tasks it claims -----------------------------------
    def _track(self, task_id: str, work: Any) -> None:
        """Run ``work`` (a coroutine) as this process's task ``task_id``."""
        raise NotImplementedError

    async def _execute(self, lease: Lease, claimed_at: float) -> TaskResult | None:
        """Run the claimed task of ``lease`` (its lease counting from ``claimed_at``)."""
        raise NotImplementedError

    async def _run_forced(self, task_id: str) -> TaskResult | None:
        """Run ``task_id``, whose lease this owner still holds, from its journal."""
        raise NotImplementedError

    # -- claiming work ---------------------------------------------------------------------
    async def _resume_own(self) -> None:
        """Take back the tasks this owner held: our previous incarnation died with them.
        Many at once are a burst (their model answers come back together): their leases
        are stretched from the start, as a claim's are."""
        held = await self.store.list_tasks(status="running", agent=self.defn.name, limit=100_000)
        if sum(task.lease_owner == self.owner for task in held) >= BURST:
            self.runner.renewals.stretch()
        for task in held:
            if task.lease_owner == self.owner and task.id not in self.running:
                self._track(task.id, self._run_forced(task.id))

    async def _claim_forever(self) -> None:
        """Claim runnable tasks of this agent while there is capacity.

        Polls every ``scan_interval`` while nothing wakes it; a ``run`` message (a
        local submit, a hand-over) or a task of its own ending wakes it at once.
        Expired leases of dead runners on any node are runnable again, so this is
        also how another node's orphans are taken over.

        A round of claims ends with one that found nothing (or at capacity), so
        polling again sooner finds nothing either, unless work came from elsewhere
        (another node's submit, a lease that expired), which a poll picks up within
        ``scan_interval``. It used to back off from 2 ms, about seven empty claims (write
        transactions) per agent process after every burst of work.
        """
        while True:
            try:
                await self._claim_some()
            except StoreError as exc:
                _log.warning("task_claim_failed", agent=self.defn.name, error=str(exc))
            try:
                async with asyncio.timeout(self.scan_interval):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()

    async def _claim_some(self) -> int:
        """Fill free capacity: each store transaction claims up to ``claim_batch`` tasks.

        No claim is made while the process's event loop lags (one turn takes more than
        a sixteenth of the lease its renewals ask for, ``lease_seconds`` or, on a busy
        process, up to three times it): the process's CPU is then the limit, and more
        tasks would make every renewal late (``stalwart_agent_claim_deferred``).

        Pacing: after a full claim, the next waits (at most a renewal tick, a third of
        ``lease_seconds``) until the tasks claimed so far have started, that is, loaded
        their journals and begun to run. If they did within the tick, the next claim may
        take twice as many (up to ``max_tasks``); if not, half as many (down to 1). So a
        burst of work is claimed in a handful of transactions (16, 32, 64, ... tasks) on
        a process that keeps up, while one that falls behind claims no faster than it
        starts them: a claimed task that has not started holds a lease it does not renew
        yet. Twice *this* claim: a full process claiming its few free slots does not
        grow the next claim (doubling the bound on each such claim grew it to
        ``max_tasks``, taken whole at the next burst).

        And a claim never takes more tasks than the process starts in that same
        sixteenth of the lease, by the loop thread's CPU time per task the last paced
        claim took to start (``start_cost``). Doubling alone let a claim reach twice what started
        within a tick, up to two thirds of the lease of event loop in one go: the last
        tasks of it began when their lease was due for renewal, and no renewal round,
        theirs or that of the tasks already running, could get through a loop held that
        long (issue 19: 101 leases of live tasks given up at once).
        """
        claimed = 0
        agent = self.defn.name
        while (free := self.defn.max_tasks - len(self.running)) > 0:
            lag = await self._loop_lag()
            renewals = self.runner.renewals
            renewals.lagging(lag)
            budget = renewals.asking / LAG_SHARE  # the longer the leases, the more lag they bear
            if lag > budget:
                # The loop is saturated: more tasks would only slow every task, and a
                # renewal that needs a few turns of the loop would miss its deadline.
                # Claim again once it keeps up (the next wake-up or poll).
                catalog.AGENT_CLAIM_DEFERRED.labels(agent).inc()
                self.claim_batch = max(1, self.claim_batch // 2)
                catalog.AGENT_CLAIM_BATCH.labels(agent).set(self.claim_batch)
                break
            want = min(free, self._claim_bound(budget))
            claimed_at = self.runner.clock.monotonic()  # each lease counts from here
            claim = asyncio.ensure_future(
                self.store.acquire_many(
                    self.owner,
                    self.runner.renewals.asking,  # longer while this process is busy
                    agent=agent,
                    limit=want,
                    max_running=self.defn.max_running,
                )
            )
            try:
                leases = await asyncio.shield(claim)
            except asyncio.CancelledError:
                # Stopped mid-claim: the claim may still commit. Settle it (bounded)
                # and give its tasks back, rather than leave leases held by nobody.
                with contextlib.suppress(StoreError, TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(self.app.lease_seconds / 2):
                        for orphan in await claim:
                            await self._give_back(orphan)
                raise
            if not leases:
                break
            # the loop's time to start them counts from here, in the loop thread's CPU:
            # what holds the loop (and the renewals behind it). Wall time also counted a
            # task's waits on I/O (a journal read, a framework's worker thread), which
            # hold nothing: it took LangGraph's claims down to a task or two, and the
            # claims' round trips then bounded the agent's throughput (verify's LC-1 at
            # 3x: p99 2.5 s became 6.6 s)
            came = time.thread_time()
            catalog.AGENT_CLAIM_SIZE.labels(agent).observe(len(leases))
            if len(leases) >= BURST:  # their model answers will come back together
                self.runner.renewals.stretch()
            for lease in leases:
                _log.info(
                    "task_claimed",
                    agent=agent,
                    task_id=lease.task_id,
                    owner=self.owner,
                    attempt=lease.task.attempts,
                )
                self.unstarted[lease.task_id] = lease
                self.starting.add(lease.task_id)
                self._track(lease.task_id, self._execute(lease, claimed_at))
            claimed += len(leases)
            if len(leases) < want:
                break  # nothing more is runnable now
            await self._pace(len(leases), came)
        if len(self.running) >= self.defn.max_tasks:
            catalog.AGENT_AT_CAPACITY.labels(agent).inc()
        return claimed

    @staticmethod
    async def _loop_lag() -> float:
        """Seconds this task waits for one turn of the event loop: near 0 on a loop that
        keeps up, the time to run everything ready on a saturated one."""
        started = time.monotonic()
        await asyncio.sleep(0)
        return time.monotonic() - started

    def _claim_bound(self, budget: float) -> int:
        """The most tasks the next claim takes: ``claim_batch``, and no more than the
        last measured start cost says this process starts within ``budget`` seconds."""
        bound = self.claim_batch
        if self.start_cost:
            bound = min(bound, max(1, int(budget / self.start_cost)))
        catalog.AGENT_CLAIM_BATCH.labels(self.defn.name).set(bound)
        return bound

    async def _pace(self, claimed: int, came: float) -> None:
        """Wait until the claimed tasks have started (at most a renewal tick), and size
        the next claim by how that went (see :meth:`_claim_some`): ``claimed`` tasks,
        whose claim came back at ``came`` (``time.thread_time()`` of the loop's thread)."""
        try:
            async with asyncio.timeout(self.app.lease_seconds / 3):
                while self.starting:
                    self.started.clear()
                    await self.started.wait()
        except TimeoutError:
            self.claim_batch = max(1, claimed // 2)
        else:
            self.claim_batch = min(claimed * 2, self.defn.max_tasks)
        # the loop's time per task (more than it is when tasks claimed earlier were
        # still starting too, less when the tick ran out first: the halving covers that)
        self.start_cost = (time.thread_time() - came) / claimed
        self._claim_bound(self.runner.renewals.asking / LAG_SHARE)  # the gauge: the next bound

    def _started(self, task_id: str) -> None:
        """``task_id`` began to run here (or ended before it could): no longer starting."""
        self.starting.discard(task_id)
        if not self.starting:
            self.started.set()

    async def _give_back(self, lease: Lease) -> None:
        self.unstarted.pop(lease.task_id, None)
        try:
            async with asyncio.timeout(self.app.lease_seconds / 2):
                await self.store.release(lease)
        except (StoreError, LeaseLost, TimeoutError) as exc:
            # it will expire instead; fencing keeps a later takeover safe
            _log.warning("task_release_failed", task_id=lease.task_id, error=str(exc))
