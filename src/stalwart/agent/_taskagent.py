"""The agent process that runs an app's tasks durably.

Each agent of an :class:`App` runs as one :class:`TaskAgent` process under the
node's supervisor. It owns its tasks through store leases named after the
node and the agent (``node/agent``), so after a crash its restarted
incarnation takes back exactly the tasks it held (no other node's) and resumes
each from its journal. Tasks arrive by message (``{"run": task_id}``) and, as
a safety net for messages lost while it was restarting or tasks submitted
straight to the store, by a scan of the store every ``scan_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import Any

from stalwart.agent._context import Resources, TaskContext
from stalwart.agent._loop import run_llm_agent
from stalwart.agent._spec import App, LLMAgent
from stalwart.durable import Context, Runner, Store, TaskResult, store_from_url
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
    scan_interval = 1.0

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
        self.gate = asyncio.Semaphore(self.defn.max_tasks)
        self.running: dict[str, asyncio.Task[TaskResult | None]] = {}
        self.scanner = asyncio.create_task(self._scan_forever())
        await self._scan()

    async def terminate(self, reason: str) -> None:
        self.scanner.cancel()
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(self.scanner, *self.running.values(), return_exceptions=True)
        await self.store.close()

    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, dict) and isinstance(message.get("run"), str):
            self._schedule(message["run"], force=False)

    async def handle_call(self, request: Any) -> Any:
        if isinstance(request, dict) and isinstance(request.get("task_id"), str):
            # a task handed over by another agent: created once under the id the caller
            # chose (deterministic, so a replayed caller finds the same task), then run
            task_id = request["task_id"]
            if await self.store.get_task(task_id) is None:
                await self.store.create_task(self.defn.name, request.get("input"), task_id=task_id)
            result = await asyncio.shield(self._schedule(task_id, force=False))
            if result is None:  # leased elsewhere: report what the store knows
                record = await self.store.get_task(task_id)
                return {
                    "task_id": task_id,
                    "status": record.status if record else "unknown",
                    "result": record.outcome if record else None,
                }
            return {"task_id": result.task_id, "status": result.status, "result": result.result}
        if isinstance(request, dict) and isinstance(request.get("run"), str):
            result = await asyncio.shield(self._schedule(request["run"], force=False))
            return (
                None
                if result is None
                else {"task_id": result.task_id, "status": result.status, "result": result.result}
            )
        if request == {"op": "running"}:
            return sorted(self.running)
        raise ValueError(f"unknown request {request!r}; expected {{'run': task_id}}")

    # -- scheduling ------------------------------------------------------------------------
    async def _scan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.scan_interval)
            try:
                await self._scan()
            except StoreError as exc:
                _log.warning("task_scan_failed", agent=self.defn.name, error=str(exc))

    async def _scan(self) -> None:
        """Pick up this agent's pending tasks, and running ones this owner held before."""
        for status in ("running", "pending"):
            for task in await self.store.list_tasks(status=status, limit=1000):
                if task.agent != self.defn.name or task.id in self.running:
                    continue
                if status == "running":
                    if task.lease_owner != self.owner:
                        continue  # another node's, or another agent's: never ours to force
                    self._schedule(task.id, force=True)  # our previous incarnation died with it
                else:
                    self._schedule(task.id, force=False)

    def _schedule(self, task_id: str, *, force: bool) -> asyncio.Task[TaskResult | None]:
        task = self.running.get(task_id)
        if task is None:
            task = asyncio.create_task(self._run(task_id, force))
            self.running[task_id] = task
            task.add_done_callback(lambda _t: self.running.pop(task_id, None))
        return task

    async def _run(self, task_id: str, force: bool) -> TaskResult | None:
        async with self.gate:
            try:
                if not force:
                    # leased by this very owner but not running here: our previous
                    # incarnation died holding it, so it is ours to take back at once
                    record = await self.store.get_task(task_id)
                    force = (
                        record is not None
                        and record.status == "running"
                        and record.lease_owner == self.owner
                    )
                return await self.runner.run(task_id, self._workflow, force=force)
            except LeaseLost as exc:  # someone else has it (or had it and finished)
                _log.info("task_not_ours", agent=self.defn.name, task_id=task_id, why=str(exc))
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
