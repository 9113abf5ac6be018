"""The task API, the approval queue and the journal view of the node's HTTP API.

- ``POST /v1/tasks`` ``{"agent", "input", "task_id"?, "seed"?}`` submits a task (202), through
  the node's own :class:`~stalwart.node.Tasks` (its input checks and admission
  limit: ``Overloaded`` is 429 with ``Retry-After``); ``GET /v1/tasks`` lists recent
  ones, ``GET /v1/tasks/{id}`` is one record, ``GET /v1/tasks/{id}/journal`` its
  journaled steps; ``POST /v1/tasks/{id}/cancel`` ``{"by"?}`` cancels a pending, running or
  parked task (200 with the record, 409 if it had already finished, 404 if unknown);
  ``GET /v1/tasks/{id}/events`` streams its model text as it is generated
  (server-sent events, resumable with ``Last-Event-ID``; see ``_stream``).
- ``GET /v1/approvals`` lists held tool calls (arguments redacted unless
  ``reveal=1``); ``POST /v1/approvals/{id}/approve`` and ``/deny`` decide one, in the
  same :class:`~stalwart.guard.ApprovalQueue` ``stalwart approvals`` uses, opened on
  the node's store database; a task parked for that call (durable approvals) is
  made pending again at once.

The node is reached the way ``/v1/cluster`` reaches it: through what its app
service sets on it (``node.tasks``), so this package imports nothing of
``stalwart.node``. Everything a task, step or approval view holds passes the
guard's default redactor before it is sent: the store keeps what steps returned,
and a careless step may have returned anything.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stalwart.durable import (
    TASK_STATUSES,
    EffectRecord,
    JournalEntry,
    Store,
    TaskRecord,
    new_task_id,
)
from stalwart.errors import (
    CallTimeout,
    CommitUnknown,
    ConfigError,
    InputRejected,
    InvalidMessage,
    NoProcess,
    Overloaded,
    StoreError,
)
from stalwart.guard import Approval, ApprovalQueue, Principal, default_redactor
from stalwart.observe import attach_traceparent
from stalwart.server._http import (
    BadRequest,
    int_param,
    json_body,
    name,
    param,
    redacted_off_loop,
    retry_after_header,
)
from stalwart.server._stream import LIVE_GRACE_S, StreamBuffer, task_events
from stalwart.server._views import NodeLike, agent_rows

__all__ = ["TaskApi", "TasksLike", "node_tasks"]

_TASK_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
_BY = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_SUBMIT_FIELDS = ("agent", "input", "task_id", "seed", "principal")
_NO_APP = (
    "this node runs no app, so it has no tasks: the task API needs a node started with "
    "an app (stalwart run module:app, or app_node())"
)


class TasksLike(Protocol):
    """What the API needs of the node's task API (``stalwart.node.Tasks`` is one)."""

    store: Store

    async def submit(
        self,
        agent: str,
        task_input: Any,
        *,
        task_id: str | None = None,
        seed: int | None = None,
        principal: Any = None,
    ) -> str: ...

    async def cancel(self, task_id: str, *, by: str = "api") -> CancelOutcome | None: ...

    async def resume_approved(self, task_id: str) -> bool: ...


class CancelOutcome(Protocol):
    """What a cancel did (``stalwart.node.CancelOutcome`` is one)."""

    @property
    def task(self) -> TaskRecord: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def stopped(self) -> str: ...
    @property
    def seconds(self) -> float: ...


def node_tasks(node: object) -> TasksLike | None:
    """The task API of the app ``node`` runs (``node.tasks``, set by its app service
    once it has started), or None."""
    tasks = getattr(node, "tasks", None)
    if tasks is None or not hasattr(tasks, "submit") or not hasattr(tasks, "store"):
        return None
    found: TasksLike = tasks
    return found


def task_fields(task: TaskRecord, *, full: bool = True) -> dict[str, Any]:
    """A task as the API shows it, before redaction (:func:`task_view`); ``full`` adds its
    input and outcome."""
    view: dict[str, Any] = {
        "id": task.id,
        "agent": task.agent,
        "status": task.status,
        "attempts": task.attempts,
        "seed": task.seed,
        "owner": task.lease_owner,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "finished_at": task.finished_at,
        "duration_s": None if task.finished_at is None else task.finished_at - task.created_at,
    }
    outcome = task.outcome
    view["outcome_unknown"] = isinstance(outcome, dict) and outcome.get("outcome_unknown") is True
    if full:
        view["input"] = task.input
        view["outcome"] = outcome
    return view


async def task_view(task: TaskRecord, *, full: bool = True) -> dict[str, Any]:
    """A task as the API shows it: :func:`task_fields`, redacted off the loop."""
    return dict(await redacted_off_loop(task_fields(task, full=full)))


def step_view(entry: JournalEntry, effect: EffectRecord | None) -> dict[str, Any]:
    """One journaled step: position, kind, name, status, timings, recorded value."""
    value = entry.value
    status = "ok" if entry.kind in ("step", "checkpoint") else "recorded"
    if entry.kind == "failed":
        status = "failed"
    elif isinstance(value, dict) and isinstance(value.get("status"), str):
        status = value["status"]
    timed = value.get("result") if entry.kind == "effect" and isinstance(value, dict) else value
    duration = timed.get("duration_s") if isinstance(timed, dict) else None
    view: dict[str, Any] = {
        "seq": entry.seq,
        "kind": entry.kind,
        "name": entry.name,
        "status": status,
        "duration_s": duration if isinstance(duration, int | float) else None,
        "at": value if entry.kind == "now" else None,
        "value": value,
    }
    if effect is not None:
        view["effect"] = {"status": effect.status, "updated_at": effect.updated_at}
        view["at"] = effect.updated_at
    return view


def _finished_already(task: TaskRecord) -> Response:
    """409 for a cancel of a finished task, with the status it finished with."""
    return JSONResponse(
        {
            "error": f"task {task.id!r} has already finished ({task.status}): nothing to cancel",
            "id": task.id,
            "status": task.status,
        },
        status_code=409,
    )


class _Queue:
    """The approval queue, opened on first use on the node's store database and kept
    (reopened after an error, so a database restart heals)."""

    def __init__(self) -> None:
        self._queue: ApprovalQueue | None = None
        self._url: str | None = None
        self._lock = asyncio.Lock()

    async def run(self, url: str, op: Callable[[ApprovalQueue], Any]) -> Any:
        async with self._lock:
            if self._queue is None or self._url != url:
                await self._close()
                self._queue = await asyncio.to_thread(ApprovalQueue, url)
                self._url = url
            queue = self._queue
        try:
            return await asyncio.to_thread(op, queue)
        except BadRequest:
            raise
        except Exception:
            async with self._lock:
                if self._queue is queue:
                    await self._close()
            raise

    async def _close(self) -> None:
        queue, self._queue = self._queue, None
        if queue is not None:
            await asyncio.to_thread(queue.close)

    async def close(self) -> None:
        async with self._lock:
            await self._close()


class TaskApi:
    """The handlers of ``/v1/tasks`` and ``/v1/approvals`` for ``node``."""

    def __init__(self, node: NodeLike, *, closing: asyncio.Event | None = None) -> None:
        self.node = node
        self.approvals = _Queue()
        self.closing = closing if closing is not None else asyncio.Event()
        self.stream_buffer = StreamBuffer(node.events)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/tasks", self.submit, methods=["POST"]),
            Route("/v1/tasks", self.list_tasks, methods=["GET"]),
            Route("/v1/tasks/{id}", self.get_task, methods=["GET"]),
            Route("/v1/tasks/{id}/journal", self.journal, methods=["GET"]),
            Route("/v1/tasks/{id}/events", self.task_events, methods=["GET"]),
            Route("/v1/tasks/{id}/retry", self.retry, methods=["POST"]),
            Route("/v1/tasks/{id}/cancel", self.cancel, methods=["POST"]),
            Route("/v1/approvals", self.list_approvals, methods=["GET"]),
            Route("/v1/approvals/{id}/approve", self.approve, methods=["POST"]),
            Route("/v1/approvals/{id}/deny", self.deny, methods=["POST"]),
        ]

    async def close(self) -> None:
        self.stream_buffer.close()
        await self.approvals.close()

    # -- helpers ------------------------------------------------------------------------------
    def _tasks(self) -> TasksLike:
        tasks = node_tasks(self.node)
        if tasks is None:
            raise BadRequest(404, _NO_APP)
        return tasks

    def _agents(self, tasks: TasksLike) -> list[str]:
        app = getattr(tasks, "app", None)
        if app is not None:
            return [str(a.name) for a in app.agents]
        return [str(row["name"]) for row in agent_rows(self.node.runtime)]

    @staticmethod
    async def _store(what: str, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except StoreError as exc:
            raise BadRequest(
                503,
                f"the task store cannot {what} now ({type(exc).__name__}: {exc}); retry later",
                **{"Retry-After": "5"},
            ) from None

    async def _task(self, request: Request) -> tuple[TasksLike, TaskRecord]:
        tasks = self._tasks()
        task_id = str(request.path_params["id"])
        if not _TASK_ID.fullmatch(task_id):
            raise BadRequest(400, "a task id is 1..200 characters without control characters")
        task = await self._store("be read", tasks.store.get_task(task_id))
        if task is None:
            raise BadRequest(404, f"no task {task_id[:80]!r} in this node's store")
        return tasks, task

    # -- tasks --------------------------------------------------------------------------------
    async def submit(self, request: Request) -> Response:
        tasks = self._tasks()
        body = await json_body(request)
        unknown = sorted(set(body) - set(_SUBMIT_FIELDS))
        if unknown:
            raise BadRequest(
                400,
                f"unknown field {unknown[0][:40]!r}: the fields are agent, input, task_id, seed, "
                "principal",
            )
        agent = body.get("agent")
        if not isinstance(agent, str) or not agent:
            raise BadRequest(
                400, "field 'agent' is required: the name of one of this node's agents"
            )
        name(agent, "field 'agent'")
        if "input" not in body:
            raise BadRequest(400, "field 'input' is required: the task's input (any JSON value)")
        task_id = body.get("task_id")
        if task_id is not None and not isinstance(task_id, str):
            raise BadRequest(400, "field 'task_id' must be a string (or left out: one is made)")
        name(task_id, "field 'task_id'")
        seed = body.get("seed")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**62
        ):
            raise BadRequest(400, "field 'seed' must be an integer in [0, 2**62) (ctx.random's)")
        principal = body.get("principal")
        if principal is not None:
            try:
                principal = Principal.from_data(principal)
            except ConfigError as exc:
                raise BadRequest(400, f"field 'principal': {exc}") from None
        agents = self._agents(tasks)
        if agent not in agents:
            raise BadRequest(
                404, f"no agent named {agent!r} in this node's app; its agents: {', '.join(agents)}"
            )
        given = task_id
        if given is not None:
            await self._exists(tasks, given)
        else:
            # made here, not by the store: an answer about a submission whose outcome is
            # unknown (CommitUnknown, below) must name the task to look up
            task_id = new_task_id()
        try:
            # a W3C traceparent header makes the task's span a child of the caller's
            with attach_traceparent(request.headers.get("traceparent", "")[:128]):
                if principal is None:
                    new_id = await tasks.submit(agent, body["input"], task_id=task_id, seed=seed)
                else:  # a node's Tasks stores it with the task (guard.wrap_input)
                    new_id = await tasks.submit(
                        agent, body["input"], task_id=task_id, seed=seed, principal=principal
                    )
        except InputRejected as exc:
            raise BadRequest(400, default_redactor().redact(str(exc))) from None
        except InvalidMessage as exc:
            raise BadRequest(400, default_redactor().redact(str(exc))) from None
        except Overloaded as exc:
            raise BadRequest(
                429, str(exc), **{"Retry-After": retry_after_header(exc.retry_after)}
            ) from None
        except CommitUnknown as exc:
            # the store could not tell whether its commit landed, even after reading the
            # row back: "nothing was stored" could be false, and a blind retry without the
            # id could store the task twice
            raise BadRequest(
                503,
                f"the task store lost the answer to its commit ({exc}): task {task_id!r} "
                f"may have been stored. GET /v1/tasks/{task_id} says whether it was; "
                f"submitting again with task_id {task_id!r} stores it at most once "
                "(409 if it was)",
                **{"Retry-After": "5"},
            ) from None
        except StoreError as exc:
            if given is not None:
                await self._exists(tasks, given)  # lost a race for the id: 409, not 503
            raise BadRequest(
                503,
                f"the task store cannot take the task now ({type(exc).__name__}: {exc}); "
                "nothing was stored, retry later",
                **{"Retry-After": "5"},
            ) from None
        return JSONResponse(
            {"id": new_id, "agent": agent, "status": "pending"},
            status_code=202,
            headers={"Location": f"/v1/tasks/{new_id}"},
        )

    async def _exists(self, tasks: TasksLike, task_id: str) -> None:
        if await self._store("be read", tasks.store.get_task(task_id)) is not None:
            raise BadRequest(
                409, f"a task with id {task_id!r} already exists: see GET /v1/tasks/{task_id}"
            )

    async def list_tasks(self, request: Request) -> Response:
        tasks = self._tasks()
        agent = name(param(request, "agent"), "agent")
        status = param(request, "status", max_len=24)
        if status is not None and status not in TASK_STATUSES:
            raise BadRequest(400, f"status must be one of {', '.join(TASK_STATUSES)}")
        limit = int_param(request, "limit", 50, 1, 1000)
        rows = await self._store(
            "be read",
            tasks.store.list_tasks(
                status=status,  # type: ignore[arg-type]  # checked against TASK_STATUSES
                agent=agent,
                limit=limit,
                newest_first=True,
            ),
        )
        views = await redacted_off_loop([task_fields(t, full=False) for t in rows])
        return JSONResponse({"count": len(views), "tasks": views})

    async def get_task(self, request: Request) -> Response:
        _, task = await self._task(request)
        return JSONResponse(await task_view(task))

    async def retry(self, request: Request) -> Response:
        """Put a failed or quarantined task back to pending (see Store.retry)."""
        tasks, task = await self._task(request)
        if not await self._store("be written", tasks.store.retry(task.id)):
            raise BadRequest(
                409,
                f"task {task.id!r} is {task.status}: only a failed or quarantined task can "
                "be retried",
            )
        return JSONResponse(
            {"id": task.id, "agent": task.agent, "status": "pending", "retried_from": task.status},
            status_code=202,
            headers={"Location": f"/v1/tasks/{task.id}"},
        )

    async def journal(self, request: Request) -> Response:
        tasks, task = await self._task(request)
        limit = int_param(request, "limit", 1000, 1, 10000)
        load = await self._store("be read", tasks.store.load_journal(task.id))
        effects = await self._store("be read", tasks.store.load_effects(task.id))
        steps = [step_view(e, effects.get(e.seq)) for e in load.entries[:limit]]
        view = {
            "task": task_fields(task, full=False),
            "count": len(load.entries),
            "truncated": len(load.entries) > limit,
            "steps": steps,
            "quarantined": [{"seq": seq, "reason": why} for seq, why in load.quarantined],
            # why it failed (type, message, redacted traceback; quarantine's last error)
            "error": task.outcome if task.status in ("failed", "quarantined") else None,
            "unknown_effects": task.outcome.get("effects", [])
            if isinstance(task.outcome, dict) and task.outcome.get("outcome_unknown") is True
            else [],
        }
        return JSONResponse(await redacted_off_loop(view))

    async def task_events(self, request: Request) -> Response:
        """The task's model text as it is generated (server-sent events; see _stream)."""
        tasks, task = await self._task(request)
        last = request.headers.get("last-event-id") or param(request, "after", max_len=40)
        return StreamingResponse(
            task_events(
                tasks.store,
                self.node.events,
                self.stream_buffer,
                task_id=task.id,
                last_event_id=last,
                closing=self.closing,
                delivered=self._delivered,
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _delivered(self, task: TaskRecord | None) -> None:
        """Wait (``LIVE_GRACE_S`` at most) until this node has every ``task.delta`` its
        process of ``task``'s agent published so far: a sync through the process's
        channel, which carries its published events in order. Nothing to wait for when
        another node holds the task's lease (its pieces never come here) or this node
        runs no such process."""
        if task is None:
            return
        node_id, _, _ = (task.lease_owner or "").partition("/")
        if task.lease_owner and node_id != self.node.id:
            return
        runtime = self.node.runtime
        if runtime.whereis(task.agent) is None:
            return
        try:
            await runtime.sync(task.agent, timeout=LIVE_GRACE_S)
        except (NoProcess, CallTimeout):
            pass  # gone, or too slow to answer: the journal's whole answer goes out

    async def cancel(self, request: Request) -> Response:
        tasks, task = await self._task(request)
        body = await json_body(request, optional=True)
        unknown = sorted(set(body) - {"by"})
        if unknown:
            raise BadRequest(400, f"unknown field {unknown[0][:40]!r}: the only field is 'by'")
        by = body.get("by", "api")
        if not isinstance(by, str) or not _BY.fullmatch(by):
            raise BadRequest(400, "field 'by' must be 1..128 characters: who cancels")
        if task.finished:
            return _finished_already(task)
        done = await self._store("cancel the task", tasks.cancel(task.id, by=by))
        if done is None:
            raise BadRequest(404, f"no task {task.id[:80]!r} in this node's store")
        if not done.cancelled:
            return _finished_already(done.task)
        view = await task_view(done.task)
        view["stopped"] = done.stopped
        view["cancel_seconds"] = round(done.seconds, 4)
        return JSONResponse(view)

    # -- approvals ----------------------------------------------------------------------------
    def _store_url(self) -> str:
        url = getattr(self._tasks(), "store_url", None)
        if not isinstance(url, str) or not url:
            raise BadRequest(
                404, "this node's task API has no store URL, so no approval queue to open"
            )
        return url

    async def _queue(self, op: Callable[[ApprovalQueue], Any]) -> Any:
        url = self._store_url()
        try:
            return await self.approvals.run(url, op)
        except BadRequest:
            raise
        except Exception as exc:
            raise BadRequest(
                503,
                f"the approval queue cannot be reached now ({type(exc).__name__}); retry later",
                **{"Retry-After": "5"},
            ) from None

    async def list_approvals(self, request: Request) -> Response:
        status = param(request, "status", max_len=16)
        if status is not None and status not in ("pending", "approved", "denied"):
            raise BadRequest(400, "status must be one of pending, approved, denied")
        reveal = param(request, "reveal", max_len=5) or "0"
        if reveal not in ("0", "1", "false", "true"):
            raise BadRequest(400, "reveal must be 1 (show arguments) or 0 (redacted)")
        limit = int_param(request, "limit", 100, 1, 1000)
        entries: list[Approval] = await self._queue(lambda q: q.list(status, limit))  # type: ignore[arg-type]
        show = reveal in ("1", "true")
        # the arguments' redaction may load the output tier's model: off the loop
        views = await asyncio.to_thread(lambda: [e.as_dict(reveal=show) for e in entries])
        for view in views:  # a parked task's deadline (durable approvals), if it has one
            if view["status"] == "pending":
                view["deadline"] = await self._deadline(str(view["task_id"]))
        return JSONResponse({"count": len(views), "approvals": views})

    async def _deadline(self, task_id: str) -> float | None:
        try:
            task = await self._tasks().store.get_task(task_id)
        except StoreError:
            return None
        info = task.outcome if task is not None and task.status == "awaiting_approval" else None
        deadline = info.get("deadline") if isinstance(info, dict) else None
        return float(deadline) if isinstance(deadline, int | float) else None

    async def approve(self, request: Request) -> Response:
        return await self._decide(request, approve=True)

    async def deny(self, request: Request) -> Response:
        return await self._decide(request, approve=False)

    async def _decide(self, request: Request, *, approve: bool) -> Response:
        aid = name(str(request.path_params["id"]), "approval id")
        assert aid is not None
        body = await json_body(request, optional=True)
        unknown = sorted(set(body) - {"by"})
        if unknown:
            raise BadRequest(400, f"unknown field {unknown[0][:40]!r}: the only field is 'by'")
        by = body.get("by", "api")
        if not isinstance(by, str) or not _BY.fullmatch(by):
            raise BadRequest(400, "field 'by' must be 1..128 characters: who decides")

        def decide(queue: ApprovalQueue) -> Approval:
            found = queue.get(aid)
            if found is None:
                raise BadRequest(404, f"no held tool call {aid!r}")
            if found.status != "pending":
                raise BadRequest(
                    409,
                    f"held tool call {aid!r} was already {found.status}"
                    + (f" by {found.decided_by}" if found.decided_by else ""),
                )
            try:
                decided = queue.decide(aid, approve=approve, by=by)
            except ConfigError as exc:  # decided by someone else meanwhile
                raise BadRequest(409, str(exc)) from None
            if decided.status != ("approved" if approve else "denied") or decided.decided_by != by:
                raise BadRequest(409, f"held tool call {aid!r} was already {decided.status}")
            return decided

        decided: Approval = await self._queue(decide)
        # a task parked for this call (durable approvals) runs again now, not at the sweep
        await self._store("wake the task", self._tasks().resume_approved(decided.task_id))
        self.node.events.emit(
            "approval_decided",
            approval=decided.id,
            status=decided.status,
            by=decided.decided_by,
            tool=decided.tool,
            task_id=decided.task_id,
            agent=decided.agent,
        )
        return JSONResponse(await asyncio.to_thread(decided.as_dict))
