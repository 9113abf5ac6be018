"""The agent process that runs an app's tasks durably.

Each agent of an :class:`App` runs as one :class:`TaskAgent` process under the
node's supervisor. It owns its tasks through store leases named after the
node and the agent (``node/agent``), so after a crash its restarted
incarnation takes back exactly the tasks it held (no other node's) and resumes
each from its journal.

Work is *claimed*, not pushed: the process leases the oldest runnable task of
its agent from the store while it has capacity (``max_tasks``). Many nodes can
share one store this way (PostgreSQL hands each task to one live owner), a
task whose runner died becomes runnable again when its lease expires, and a
task written straight to the store (``stalwart task submit``) is found by the
next poll. Polling backs off from 2 ms to ``scan_interval`` when idle; a
``{"run": task_id}`` message wakes it at once.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import Any

from stalwart.agent._context import Resources, TaskContext
from stalwart.agent._loop import run_llm_agent
from stalwart.agent._spec import App, LLMAgent
from stalwart.durable import Context, Lease, Runner, Store, TaskResult, store_from_url
from stalwart.errors import ConfigError, LeaseLost, StoreError
from stalwart.llm import ModelClient, Provider, model_chain
from stalwart.observe import EventBus, get_logger
from stalwart.runtime import Agent
from stalwart.tools import ToolRegistry

__all__ = ["TaskAgent", "load_app"]

_log = get_logger("stalwart.agent")


def load_app(ref: str) -> App:
    """The :class:`App` named ``module:attribute`` (or returned by calling it), or a
    ``.toml`` file describing one."""
    if ref.endswith(".toml"):
        from stalwart.agent._toml import app_from_toml

        return app_from_toml(ref)
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"app reference {ref!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import app module {module_name!r}: {exc}") from exc
    obj: Any = getattr(module, attr, None)
    if obj is None:
        raise ConfigError(f"app module {module_name!r} has no attribute {attr!r}")
    if callable(obj) and not isinstance(obj, App):
        obj = obj()
    if not isinstance(obj, App):
        raise ConfigError(f"{ref!r} is a {type(obj).__name__}, not a stalwart App")
    return obj


def build_models(
    app: App, chains: set[str], sim_url: str | None, events: EventBus
) -> dict[str, ModelClient]:
    providers = dict(app.providers)
    if sim_url:
        providers.setdefault("sim", Provider(f"{sim_url}/v1"))
    return {
        name: model_chain(name, app.models[name], providers=providers, events=events)
        for name in chains
    }


class TaskAgent(Agent):
    """Runs the tasks of one agent of an app (see the module docstring)."""

    max_concurrency = 64
    scan_interval = 0.25
    """Longest wait between two claims when idle (the backoff starts at 2 ms)."""

    async def init(self, args: Any) -> None:
        self.app = load_app(args["app"])
        if args.get("sim_url"):
            os.environ["STALWART_SIM_URL"] = str(args["sim_url"])
        self.defn = self.app.agent(self.ctx.name)
        self.events = EventBus()
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
        )
        self.store: Store = store_from_url(args["store"], events=self.events)
        await self.store.open()
        self.owner = f"{args['node']}/{self.defn.name}"
        self.runner = Runner(
            self.store, owner=self.owner, lease_seconds=self.app.lease_seconds, events=self.events
        )
        self.running: dict[str, asyncio.Task[TaskResult | None]] = {}
        self.wake = asyncio.Event()
        await self._resume_own()
        self.claimer = asyncio.create_task(self._claim_forever())

    async def terminate(self, reason: str) -> None:
        self.claimer.cancel()
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(self.claimer, *self.running.values(), return_exceptions=True)
        await self.store.close()

    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, dict) and isinstance(message.get("run"), str):
            self.wake.set()  # new work: claim now rather than at the next poll

    async def handle_call(self, request: Any) -> Any:
        if isinstance(request, dict) and isinstance(request.get("task_id"), str):
            # a task handed over by another agent: created once under the id the caller
            # chose (deterministic, so a replayed caller finds the same task), then run
            # wherever an agent of this name claims it (here, or on another node)
            task_id = request["task_id"]
            if await self.store.get_task(task_id) is None:
                await self.store.create_task(self.defn.name, request.get("input"), task_id=task_id)
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

    # -- claiming work ---------------------------------------------------------------------
    async def _resume_own(self) -> None:
        """Take back the tasks this owner held: our previous incarnation died with them."""
        for task in await self.store.list_tasks(
            status="running", agent=self.defn.name, limit=100_000
        ):
            if task.lease_owner == self.owner and task.id not in self.running:
                self._track(task.id, self._run_forced(task.id))

    async def _claim_forever(self) -> None:
        """Claim runnable tasks of this agent while there is capacity.

        Polls with backoff (2 ms up to ``scan_interval``) when idle; a ``run``
        message wakes it at once. Expired leases of dead runners on any node
        are runnable again, so this is also how another node's orphans are
        taken over.
        """
        delay = 0.002
        while True:
            try:
                claimed = await self._claim_some()
            except StoreError as exc:
                _log.warning("task_claim_failed", agent=self.defn.name, error=str(exc))
                claimed = 0
            delay = 0.002 if claimed else min(delay * 2, self.scan_interval)
            try:
                async with asyncio.timeout(delay):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()

    async def _claim_some(self) -> int:
        claimed = 0
        while len(self.running) < self.defn.max_tasks:
            lease = await self.store.acquire(
                self.owner, self.app.lease_seconds, agent=self.defn.name
            )
            if lease is None:
                break
            _log.info(
                "task_claimed",
                agent=self.defn.name,
                task_id=lease.task_id,
                owner=self.owner,
                attempt=lease.task.attempts,
            )
            self._track(lease.task_id, self._execute(lease))
            claimed += 1
        return claimed

    def _track(self, task_id: str, work: Any) -> None:
        task: asyncio.Task[TaskResult | None] = asyncio.create_task(work)
        self.running[task_id] = task

        def done(_t: asyncio.Task[TaskResult | None]) -> None:
            self.running.pop(task_id, None)
            self.wake.set()  # capacity freed: claim the next one

        task.add_done_callback(done)

    async def _execute(self, lease: Lease) -> TaskResult | None:
        try:
            return await self.runner.execute(lease, self._workflow)
        except LeaseLost as exc:
            _log.warning(
                "task_lease_lost", agent=self.defn.name, task_id=lease.task_id, why=str(exc)
            )
            return None

    async def _run_forced(self, task_id: str) -> TaskResult | None:
        try:
            return await self.runner.run(task_id, self._workflow, force=True)
        except LeaseLost as exc:
            _log.warning("task_lease_lost", agent=self.defn.name, task_id=task_id, why=str(exc))
            return None

    async def _workflow(self, ctx: Context, task_input: Any) -> Any:
        tctx = TaskContext(ctx, self.resources, model=self.defn.model)
        try:
            async with asyncio.timeout(self.defn.task_timeout):
                if isinstance(self.defn, LLMAgent):
                    return await run_llm_agent(tctx, self.defn, task_input)
                assert self.defn.fn is not None
                return await self.defn.fn(tctx, task_input)
        except TimeoutError:
            raise TimeoutError(
                f"task {ctx.task_id} of {self.defn.name!r} ran past its task_timeout of "
                f"{self.defn.task_timeout:g} s"
            ) from None
