"""The agent process that runs an app's tasks durably.

Each agent of an :class:`App` runs as one :class:`TaskAgent` process under the
node's supervisor. It owns its tasks through store leases named after the
node and the agent (``node/agent``), so after a crash its restarted
incarnation takes back exactly the tasks it held (no other node's) and resumes
each from its journal.

Work is *claimed*, not pushed: the process leases the oldest runnable tasks of
its agent from the store while it has capacity (``max_tasks``), many in one
transaction, paced by how fast the claimed tasks start. Many nodes can
share one store this way (PostgreSQL hands each task to one live owner), a
task whose runner died becomes runnable again when its lease expires, and a
task written straight to the store (``stalwart task submit``) is found by the
next poll, every ``scan_interval`` (0.25 s) while nothing wakes it; a
``{"run": task_id}`` message, or a task of its own ending, wakes it at once.

The claiming (and its pacing) is :class:`~stalwart.agent._claims.ClaimLoop`, which
:class:`TaskAgent` inherits; what it builds from the app at start is in ``_setup.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import os
import time
from typing import Any

from stalwart.agent._claims import ClaimLoop
from stalwart.agent._context import TaskContext
from stalwart.agent._guarded import build_rate_limiters, finish_output, prepare_input
from stalwart.agent._handover import HandOvers
from stalwart.agent._loop import run_llm_agent
from stalwart.agent._resources import Resources
from stalwart.agent._setup import build_models, load_app
from stalwart.agent._spec import LLMAgent
from stalwart.durable import (
    Context,
    Lease,
    Runner,
    Store,
    TaskResult,
    default_counter,
    store_from_url,
)
from stalwart.errors import (
    ConfigError,
    IncompatibleFormat,
    LeaseLost,
    StalwartError,
    StoreError,
)
from stalwart.guard import (
    ApprovalQueue,
    RedactingEventBus,
    SpendLedger,
    default_redactor,
    install_redactor,
)
from stalwart.observe import (
    catalog,
    current_trace_id,
    current_traceparent,
    get_logger,
    log_context,
    set_span_attributes,
    set_span_error,
    start_span,
    trace_events,
    tracing_enabled,
)
from stalwart.runtime import BLAME, Agent, Blame
from stalwart.tools import ToolRegistry
from stalwart.tools.mcp import servers_of

__all__ = ["TaskAgent"]

_log = get_logger("stalwart.agent")


def _finished(result: TaskResult | None, created_at: float | None) -> None:
    """Log a task's end and count it (task completion rate, duration: MA-2)."""
    if result is None:
        return
    if result.status == "awaiting_approval":  # parked, not finished (durable approvals)
        _log.info("task_suspended", status=result.status, waiting=result.result)
        return
    if result.status == "cancelled":
        _log.info("task_cancelled", executed_steps=result.executed_steps)
        return
    outcome = "completed" if result.status == "succeeded" else "failed"
    catalog.TASKS_FINISHED.labels(outcome).inc()
    if created_at is not None:
        catalog.TASK_DURATION.observe(max(0.0, time.time() - created_at))
    _log.info(
        "task_finished",
        status=result.status,
        replayed_steps=result.replayed_steps,
        executed_steps=result.executed_steps,
    )


def _end_span(span: Any, result: TaskResult | None) -> None:
    """The task span's outcome: its status, and an error when it failed."""
    set_span_attributes(span, {"stalwart.task.status": "lost" if result is None else result.status})
    if result is not None and result.status == "failed":
        error = result.result if isinstance(result.result, dict) else {}
        set_span_error(span, str(error.get("type", "Error")), str(error.get("message", "")))


def flag_unknown_effects(ctx: Context, value: Any) -> Any:
    """``value``, marked when a side effect of the task has an unknown outcome.

    An at-most-once effect interrupted mid-call (its process killed between the
    ledger's "started" and "completed") is not repeated; the task may still end,
    but its result must not read as a plain success. Such a result carries
    ``outcome_unknown: true`` and ``effects: [{tool, step, key, outcome: "unknown"}]``
    (a non-dict result is wrapped as ``{"result": value, ...}``), an LLM agent's
    ``status`` becomes ``outcome_unknown``, and ``stalwart_effects_unknown_total``
    counts each such effect.
    """
    if not ctx.unknown_effects:
        return value
    effects = [
        {"tool": name.removeprefix("tool:"), "step": name, "key": key, "outcome": "unknown"}
        for name, key in ctx.unknown_effects
    ]
    for effect in effects:
        catalog.EFFECTS_UNKNOWN.labels(effect["tool"]).inc()
    _log.warning("task_outcome_unknown", effects=[e["key"] for e in effects])
    flagged: dict[str, Any] = dict(value) if isinstance(value, dict) else {"result": value}
    if flagged.get("status") == "completed":
        flagged["status"] = "outcome_unknown"
    flagged["outcome_unknown"] = True
    flagged["effects"] = effects
    return flagged


class TaskAgent(ClaimLoop, Agent):
    """Runs the tasks of one agent of an app (see the module docstring)."""

    max_concurrency = 64
    """Calls answered at once. Hand-overs no longer wait inside a call (see
    ``agent/_handover.py``), so this bounds only plain ``call_agent`` calls."""
    MAX_NOTIFY = 100_000
    """Hand-over notices remembered for tasks not yet finished here, and ends remembered
    for notices that arrive late."""

    async def init(self, args: Any) -> None:
        self.app = load_app(args["app"])
        if args.get("sim_url"):
            os.environ["STALWART_SIM_URL"] = str(args["sim_url"])
        self.defn = self.app.agent(self.ctx.name)
        install_redactor()
        self.events = RedactingEventBus()
        trace_events(self.events)  # retries, breaker rejections, fallbacks: span events
        chains = {self.defn.model} if self.defn.model else set()
        models = build_models(self.app, chains, args.get("sim_url"), self.events)
        self.resources = Resources(
            agent=self.defn.name,
            models=models,
            tools=ToolRegistry(self.defn.tools),
            scopes=frozenset(self.defn.scopes),
            callable_agents=frozenset(self.defn.agents),
            runtime=self.ctx,
            events=self.events,
            security=self.defn.security,
            # their databases are connected off the loop (a slow or remote database
            # must not stall this process's loop, and so its pulse, while it starts)
            ledger=await asyncio.to_thread(self._ledger, args["store"], args["node"]),
            approvals=await asyncio.to_thread(self._approvals, args["store"]),
            rate_limiters=build_rate_limiters(self.defn.security, self.defn.name),
            prices=self.app.price_table(),
        )
        if isinstance(self.defn, LLMAgent):
            # The token counter loads its encoding once per process (0.5-3 s of CPU): off
            # the loop, before the first task would load it on the loop and miss heartbeats.
            await asyncio.to_thread(default_counter)
        # The MCP servers of its tools: connected now (a server that is down makes its
        # tools answer "unavailable" and is retried in the background), closed on stop.
        self.tool_servers = contextlib.AsyncExitStack()
        for server in servers_of(self.defn.tools):
            await self.tool_servers.enter_async_context(server)
        self.store: Store = store_from_url(args["store"], events=self.events)
        await self.store.open()
        self.resources.handovers = HandOvers(self.store, self.ctx, self.defn.name)
        self.notify: dict[str, set[str]] = {}
        """Task id -> the agents to cast ``{"finished": id}`` to when it ends here."""
        self.ended: collections.OrderedDict[str, bool] = collections.OrderedDict()
        """The ids of the tasks that ended here last (a wake-up can arrive after the end),
        each with whether a cancel (or a fenced lease) cut its run here short."""
        self.cut_short: set[str] = set()
        """Running tasks a cancel stopped: interrupted here, or their runner found the lease
        fenced (they ended ``cancelled``, or with LeaseLost)."""
        self.owner = f"{args['node']}/{self.defn.name}"
        self.runner = Runner(
            self.store,
            owner=self.owner,
            lease_seconds=self.app.lease_seconds,
            events=self.events,
            redact=default_redactor().redact,  # a failed task's stored traceback
        )
        # the claim loop's state (see ClaimLoop)
        self.running = {}
        self.unstarted = {}
        self.wake = asyncio.Event()
        self.claim_batch = min(self.first_claim, self.defn.max_tasks)
        self.start_cost = None
        catalog.AGENT_CLAIM_BATCH.labels(self.defn.name).set(self.claim_batch)
        self.starting = set()
        self.started = asyncio.Event()
        await self._resume_own()
        self.claimer = asyncio.create_task(self._claim_forever())

    @staticmethod
    def ledger_holder(node_id: str, pid: int) -> str:
        """The holder an agent process's budget reservations carry (see
        :meth:`~stalwart.guard.SpendLedger.charge_holder`): its node and pid."""
        return f"{node_id}/{pid}"

    def _ledger(self, store_url: str, node_id: str) -> SpendLedger | None:
        budget = self.defn.security.budget
        if not budget.limited:
            return None
        # the holder is what the node charges when it sees this process exit
        holder = TaskAgent.ledger_holder(node_id, os.getpid())
        return SpendLedger(budget.ledger or store_url, events=self.events, holder=holder)

    def _approvals(self, store_url: str) -> ApprovalQueue | None:
        taint = self.defn.security.taint
        if not taint.tools and not any(t.side_effect for t in self.defn.tools):
            return None  # nothing this agent runs can be held: no connection needed
        try:
            return ApprovalQueue(store_url)
        except ConfigError as exc:  # no queue on this store: held calls are refused instead
            _log.warning("approval_queue_unavailable", agent=self.defn.name, error=str(exc))
            return None

    async def terminate(self, reason: str) -> None:
        # Drain: stop claiming first (a claim in flight is settled: tracked, or given
        # back), then cancel the running tasks, whose runners hand their leases back.
        self.claimer.cancel()
        await asyncio.gather(self.claimer, return_exceptions=True)
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
        for lease in list(self.unstarted.values()):
            await self._give_back(lease)
        await self.store.close()
        await self.tool_servers.aclose()
        for guard_db in (self.resources.ledger, self.resources.approvals):
            if guard_db is not None:
                await asyncio.to_thread(guard_db.close)

    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, dict) and isinstance(message.get("run"), str):
            if isinstance(message.get("notify"), str):  # a hand-over waits for this one
                if message["run"] in self.ended:  # it ended before the wake-up arrived
                    self.ctx.cast(message["notify"], {"finished": message["run"]})
                    return
                self.notify.setdefault(message["run"], set()).add(message["notify"])
                # A task run elsewhere (another node) never ends here: keep the map
                # bounded; its waiter finds the outcome by reading the store instead.
                while len(self.notify) > self.MAX_NOTIFY:
                    del self.notify[next(iter(self.notify))]
            self.wake.set()  # new work: claim now rather than at the next poll
        elif isinstance(message, dict) and isinstance(message.get("finished"), str):
            handovers = self.resources.handovers
            if handovers is not None:
                status = message.get("status")
                if isinstance(status, str) and "outcome" in message:
                    handovers.finished(message["finished"], (status, message["outcome"]))
                else:
                    handovers.finished(message["finished"])
        elif isinstance(message, dict) and isinstance(message.get("cancel"), str):
            await self._cancel(message["cancel"])

    async def handle_call(self, request: Any) -> Any:
        if (
            isinstance(request, dict)
            and request.get("op") == "cancel"
            and isinstance(request.get("task_id"), str)
        ):
            return await self._cancel(request["task_id"])
        if isinstance(request, dict) and isinstance(request.get("task_id"), str):
            # a task handed over by another agent: created once under the id the caller
            # chose (deterministic, so a replayed caller finds the same task), then run
            # wherever an agent of this name claims it (here, or on another node)
            task_id = request["task_id"]
            if await self.store.get_task(task_id) is None:
                # the caller's span (carried by the call) parents the task, durably
                await self.store.create_task(
                    self.defn.name,
                    request.get("input"),
                    task_id=task_id,
                    trace=current_traceparent(),
                )
            self.wake.set()
            return await self._outcome(task_id)
        if isinstance(request, dict) and isinstance(request.get("run"), str):
            self.wake.set()
            return await self._outcome(request["run"])
        if request == {"op": "running"}:
            return sorted(self.running)
        raise ValueError(f"unknown request {request!r}; expected {{'task_id': ..., 'input': ...}}")

    async def _outcome(self, task_id: str) -> dict[str, Any]:
        """Wait for the task to end (bounded by the caller's deadline) and report it."""
        pause = 0.002
        while True:
            local = self.running.get(task_id)
            if local is not None:
                await asyncio.shield(local)
            record = await self.store.get_task(task_id)
            if record is None:
                raise ValueError(f"no task {task_id!r}")
            if record.finished:
                return {"task_id": task_id, "status": record.status, "result": record.outcome}
            await asyncio.sleep(pause)  # running elsewhere (another node): follow the store
            pause = min(pause * 2, 0.2)

    async def _cancel(self, task_id: str) -> bool:
        """Interrupt ``task_id`` if it runs here (the store already says ``cancelled``, so
        its lease is fenced): the step in flight gets CancelledError at its next await.
        True once it has stopped; False if it was not running in this process."""
        work = self.running.get(task_id)
        if work is None:
            # The cancel fenced its lease: the runner's next renewal (or write) was refused
            # and it stopped the step itself, before this request came (the node's sweep
            # runs on its own tick; on a busy machine the lease's tick often wins). It was
            # stopped here all the same.
            return self.ended.get(task_id, False)
        self.cut_short.add(task_id)
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)  # bounded by the caller's deadline
        _log.info("task_cancelled", agent=self.defn.name, task_id=task_id)
        return True

    async def _after_suspend(self, result: TaskResult) -> None:
        """A decision may have landed between the approval's submission and the task
        parking; then nobody else would wake it before the sweep: wake it now."""
        waiting = result.result if isinstance(result.result, dict) else {}
        approval = waiting.get("approval")
        queue = self.resources.approvals
        if queue is None or not isinstance(approval, str):
            return
        try:
            found = await asyncio.to_thread(queue.get, approval)
            decided = found is not None and found.status != "pending"
            if decided and await self.store.wake(result.task_id):
                self.wake.set()
        except (StoreError, ConfigError) as exc:  # the node's sweep wakes it instead
            _log.warning("task_wake_failed", task_id=result.task_id, error=str(exc))

    def _track(self, task_id: str, work: Any) -> None:
        # Blame: if this task holds the loop too long, the node kills this process and
        # charges the task (quarantine after ``quarantine_after`` such kills); past its
        # deadline, the kill fails it with its task_timeout.
        context = contextvars.copy_context()
        context.run(BLAME.set, Blame(task_id, time.monotonic() + self.defn.task_timeout))
        task: asyncio.Task[TaskResult | None] = asyncio.create_task(work, context=context)
        self.running[task_id] = task
        running = catalog.AGENT_TASKS_RUNNING.labels(self.defn.name)
        running.set(len(self.running))

        def done(_t: asyncio.Task[TaskResult | None]) -> None:
            self.running.pop(task_id, None)
            self._started(task_id)
            running.set(len(self.running))
            self.ended[task_id] = task_id in self.cut_short
            self.cut_short.discard(task_id)
            if len(self.ended) > self.MAX_NOTIFY:
                self.ended.popitem(last=False)
            notice: dict[str, Any] = {"finished": task_id}
            ended = None if _t.cancelled() or _t.exception() is not None else _t.result()
            if ended is not None and ended.stored is not None:
                # the end as stored (committed before this callback runs): the waiter needs
                # no read of the record
                notice["status"], notice["outcome"] = ended.stored
            for waiter in self.notify.pop(task_id, ()):  # hand-overs waiting on it
                self.ctx.cast(waiter, notice)
            self.wake.set()  # capacity freed: claim the next one

        task.add_done_callback(done)

    async def _execute(self, lease: Lease, claimed_at: float) -> TaskResult | None:
        self.unstarted.pop(lease.task_id, None)  # from here, the runner gives it back
        # every line logged while this task runs carries its id (and this agent's) and the
        # trace's id (the task id when tracing is off)
        with (
            self._task_span(lease.task_id, lease.task.attempts, lease.task.trace) as span,
            log_context(task_id=lease.task_id, trace_id=current_trace_id() or lease.task_id),
        ):
            _log.info("task_started", agent=self.defn.name, attempt=lease.task.attempts)
            result = await self._execute_leased(lease, claimed_at)
            _finished(result, lease.task.created_at)
            _end_span(span, result)
            if result is not None and result.status == "cancelled":  # its lease was fenced
                self.cut_short.add(lease.task_id)
            if result is not None and result.status == "awaiting_approval":
                await self._after_suspend(result)
            return result

    def _task_span(self, task_id: str, attempt: int, parent: str) -> Any:
        """The task's ``invoke_agent`` span, under ``parent``: the ``traceparent`` stored
        with the task when it was created (by a hand-over, an HTTP submit), so every run
        of it -- the first, or a resume after a crash -- continues the creator's trace."""
        return start_span(
            f"invoke_agent {self.defn.name}",
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": self.defn.name,
                "stalwart.task.id": task_id,
                "stalwart.task.attempt": attempt,
            },
            parent=parent,
        )

    async def _execute_leased(self, lease: Lease, claimed_at: float) -> TaskResult | None:
        try:
            return await self.runner.execute(lease, self._workflow, claimed_at=claimed_at)
        except IncompatibleFormat as exc:
            _log.warning(
                "task_left_for_newer_node",
                agent=self.defn.name,
                task_id=lease.task_id,
                why=str(exc),
            )
            return None
        except LeaseLost as exc:
            self.cut_short.add(lease.task_id)
            _log.warning(
                "task_lease_lost", agent=self.defn.name, task_id=lease.task_id, why=str(exc)
            )
            return None
        except StoreError as exc:
            # The store refused or lost the write (e.g. PostgreSQL ended a transaction
            # left idle by a paused node): nothing was applied; the lease lapses and a
            # runner resumes the task from its journal.
            _log.warning(
                "task_store_failed", agent=self.defn.name, task_id=lease.task_id, why=str(exc)
            )
            return None
        except StalwartError as exc:
            # A transient error escaped the task's own retries: the runner gave the task
            # back to run again (a bounded number of times; see Runner.transient_attempts)
            _log.warning(
                "task_released_after_transient_error",
                agent=self.defn.name,
                task_id=lease.task_id,
                attempt=lease.task.attempts,
                error=f"{type(exc).__name__}: {default_redactor().redact(str(exc))}",
            )
            return None

    async def _run_forced(self, task_id: str) -> TaskResult | None:
        record = await self.store.get_task(task_id) if tracing_enabled() else None
        with (
            self._task_span(task_id, 0, record.trace if record is not None else "") as span,
            log_context(task_id=task_id, trace_id=current_trace_id() or task_id),
        ):
            _log.info("task_resumed", agent=self.defn.name)
            try:
                result = await self.runner.run(task_id, self._workflow, force=True)
            except LeaseLost as exc:
                self.cut_short.add(task_id)
                _log.warning("task_lease_lost", agent=self.defn.name, why=str(exc))
                return None
            _finished(result, None)
            _end_span(span, result)
            if result.status == "cancelled":
                self.cut_short.add(task_id)
            return result

    async def _workflow(self, ctx: Context, task_input: Any) -> Any:
        self._started(ctx.task_id)
        tctx = TaskContext(ctx, self.resources, model=self.defn.model)
        timer = asyncio.timeout(self.defn.task_timeout)
        try:
            async with timer:
                if isinstance(self.defn, LLMAgent):
                    answer = await run_llm_agent(tctx, self.defn, task_input)
                    return flag_unknown_effects(ctx, answer)
                assert self.defn.fn is not None
                try:
                    value = await self.defn.fn(tctx, prepare_input(tctx, task_input))
                finally:  # a reservation the function's model calls took ahead and left
                    await tctx.release_ahead()
                clean = await asyncio.to_thread(finish_output, tctx, value)  # NER: off the loop
                return flag_unknown_effects(ctx, clean)
        except Exception as exc:  # the stored error and its log line carry no PII or secrets
            # only the task_timeout's own expiry is "ran past": a TimeoutError of the body (a
            # hand-over's CallTimeout, a model's DeadlineExceeded) is stored as it is
            if isinstance(exc, TimeoutError) and timer.expired():
                raise TimeoutError(
                    f"task {ctx.task_id} of {self.defn.name!r} ran past its task_timeout of "
                    f"{self.defn.task_timeout:g} s"
                ) from None
            clean = default_redactor().redact_exception(exc)
            if clean is exc:
                raise
            # the original frames stay (the stored traceback shows where it failed)
            raise clean.with_traceback(exc.__traceback__) from None
