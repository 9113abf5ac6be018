"""Running an :class:`~stalwart.agent.App` on a node, and submitting tasks to it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

from stalwart.agent import App, PythonAgent, TaskAgent, load_app
from stalwart.config import RuntimeSettings
from stalwart.durable import Store, TaskRecord, WriteProbe, store_from_url
from stalwart.errors import ConfigError, DeadlineExceeded, NoProcess, Overloaded, StoreError
from stalwart.guard import (
    Principal,
    RedactingEventBus,
    install_redactor,
    learn_vault_secrets,
    validate_input,
    wrap_input,
)
from stalwart.llm import ChainHealth, Provider
from stalwart.llm.sim import SimServer
from stalwart.node._admission import WaitingCounts
from stalwart.node._charge import DeadCallCharger
from stalwart.node._control import CancelOutcome, TaskControl
from stalwart.node._node import Node, NodeService
from stalwart.node._quarantine import PoisonGuard
from stalwart.node._simkey import provision_sim_key
from stalwart.observe import REGISTRY, EventBus, catalog, current_traceparent, set_redactor
from stalwart.runtime import ChildSpec, SupervisorSpec

__all__ = ["AppService", "Tasks", "app_node"]


HEARTBEAT_SECONDS = 2.0
"""How often a node refreshes its entry in the store's node registry."""


def stalwart_version() -> str:
    from stalwart import __version__

    return __version__


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tasks:
    """Submit tasks to an app's agents and follow them (through the store)."""

    def __init__(
        self,
        node: Node | None,
        store: Store,
        app: App | None = None,
        *,
        max_pending: int | None = None,
        max_pending_node: int | None = None,
        store_url: str | None = None,
    ) -> None:
        """``node``: the running node to notify of new tasks (None: the store alone);
        ``app``: whose agents' input limits apply at submission (default limits if None);
        ``max_pending``: the admission limit -- when an agent already has that many
        tasks waiting (stored, not started), :meth:`submit` refuses new ones with
        :class:`~stalwart.errors.Overloaded` instead of queueing without bound;
        ``max_pending_node``: the same, counting the waiting tasks of every agent;
        ``store_url``: where ``store`` lives, credentials included (never log it), for
        what shares its database (the approval queue the HTTP API opens)."""
        self.node = node
        self.store = store
        self.app = app
        self.max_pending = max_pending
        self.max_pending_node = max_pending_node
        self.max_pending_for: dict[str, int] = {}
        """Per-agent admission limits that override ``max_pending`` (verify's shedding
        driver refuses a probe agent's tasks this way, leaving the others alone)."""
        self.store_url = store_url
        self._waiting = WaitingCounts(store.count_pending_each)
        self.control: TaskControl | None = None
        """Cancel and approval handling (set by the app service while the node runs)."""

    async def submit(
        self,
        agent: str,
        task_input: Any,
        *,
        task_id: str | None = None,
        seed: int | None = None,
        principal: Principal | str | Mapping[str, Any] | None = None,
    ) -> str:
        """Store a new task for ``agent`` and tell the agent; returns the task id.

        ``principal`` is who the task is for (a customer id, an account: a
        :class:`~stalwart.guard.Principal`, its id, or its JSON form); it is stored
        with the task (:func:`~stalwart.guard.wrap_input`) and the agent's rules see it.

        The task is durable once this returns: if the agent is restarting, it
        finds the task in the store when it is back. An input that is not JSON
        data, or too large or too deep, raises :class:`~stalwart.errors.InputRejected`
        here and nothing is stored (the agent checks its own schema and limits again).
        """
        limits = None
        if self.app is not None and agent in {a.name for a in self.app.agents}:
            limits = self.app.agent(agent).security.inputs
        validate_input(task_input, limits=limits)
        task_input = wrap_input(task_input, principal)
        counted = await self._admit(agent)
        try:
            # a caller's trace (an HTTP traceparent) parents the task's span, stored with it
            record = await self.store.create_task(
                agent, task_input, task_id=task_id, seed=seed, trace=current_traceparent()
            )
        finally:
            self._waiting.written(counted)
        catalog.TASKS_SUBMITTED.inc()
        self._tell(agent, record.id)
        return record.id

    def _tell(self, agent: str, task_id: str) -> None:
        """Wake ``agent`` for ``task_id`` (the run cast carries the current span context)."""
        if self.node is not None:
            try:
                self.node.cast(agent, {"run": task_id})
            except NoProcess:
                pass  # the agent is restarting; its store scan picks the task up

    async def _admit(self, agent: str) -> list[str | None]:
        """Refuse the task (:class:`Overloaded`) when too many already wait; returns the
        counts it was admitted under (for :meth:`WaitingCounts.written`)."""
        per_agent = self.max_pending_for.get(agent, self.max_pending)
        limits = [(limit, who) for limit, who in ((per_agent, agent), (self.max_pending_node, None))
                  if limit is not None]  # fmt: skip
        if not limits:
            return []
        # both counts in one read, shared by the submissions that come while it runs
        who_all = [who for _, who in limits]
        counts = await self._waiting.counts(who_all)
        for (limit, who), waiting in zip(limits, counts, strict=True):
            if waiting >= limit:
                catalog.TASKS_SHED.labels(agent).inc()
                where = f"agent {agent!r} has" if who is not None else "this node's store has"
                setting = "max_pending" if who is not None else "max_pending_node"
                raise Overloaded(
                    f"{where} {waiting} tasks waiting, its admission limit ({setting}="
                    f"{limit}): not accepted, retry later",
                    retry_after=1.0,
                )
        self._waiting.admitted(who_all)
        return who_all

    async def cancel(self, task_id: str, *, by: str = "api") -> CancelOutcome | None:
        """Cancel a pending, running or parked task (see :class:`TaskControl`); None if
        there is no such task. Without a running node, only the store is changed (the
        owning node's sweep interrupts the step in flight)."""
        if self.control is not None:
            return await self.control.cancel(task_id, by=by)
        started = time.monotonic()
        before = await self.store.get_task(task_id)
        if before is None or before.finished:
            return None if before is None else CancelOutcome(before, False, "not_running", 0.0)
        outcome = {"type": "Cancelled", "message": f"cancelled by {by}", "by": by}
        after = await self.store.cancel(task_id, outcome)
        if after is None:
            return None
        done = after.status == "cancelled" and after.outcome == outcome
        stopped = "elsewhere" if done and before.status == "running" else "not_running"
        return CancelOutcome(after, done, stopped, time.monotonic() - started)

    async def resume_approved(self, task_id: str) -> bool:
        """Wake a task parked for an approval that has just been decided."""
        if self.control is not None:
            task = await self.store.get_task(task_id)
            return task is not None and await self.control.resume(task_id, task.agent)
        return await self.store.wake(task_id)

    async def get(self, task_id: str) -> TaskRecord | None:
        return await self.store.get_task(task_id)

    async def wait(self, task_id: str, *, timeout: float) -> TaskRecord:
        """The finished task; :class:`DeadlineExceeded` if it is not done by ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            task = await self.store.get_task(task_id)
            if task is None:
                raise StoreError(f"no task {task_id!r}")
            if task.finished:
                return task
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(
                    f"task {task_id!r} is still {task.status} after {timeout:g} s"
                )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)

    async def run(self, agent: str, task_input: Any, *, timeout: float, **kw: Any) -> TaskRecord:
        """Submit and wait."""
        return await self.wait(await self.submit(agent, task_input, **kw), timeout=timeout)


def _breaker_open(spec: str) -> bool:
    """Whether ``spec``'s breaker is open (1) or forced open by an operator (4), from the
    agents' metrics shipped to the node."""
    return REGISTRY.get_sample_value("stalwart_breaker_state", {"dependency": spec}) in (1, 4)


def _chain_health(app: App, chain: str, models: list[str], sim_url: str | None) -> ChainHealth:
    """The readiness check of ``chain``: degraded while every model is unusable (its
    breaker open, or its endpoint refusing connections), naming each and why."""
    providers = dict(app.providers)
    if sim_url:
        sim = providers.get("sim")
        base = f"{sim_url}/v1"
        providers["sim"] = dataclasses.replace(sim, base_url=base) if sim else Provider(base)
    return ChainHealth(chain, models, providers=providers, breaker_open=_breaker_open)


class AppService:
    """Starts what an app needs beside its agents: the store (and the sim, if asked)."""

    def __init__(
        self, app: App, store_url: str, sim_port: int | None, sim_url: str | None = None
    ) -> None:
        self.app = app
        self.sim_url = sim_url  # a sim this node uses but does not run ($STALWART_SIM_URL)
        self.store_url = store_url
        self.sim_port = sim_port
        self.sim: SimServer | None = None
        self.store: Store | None = None
        self.tasks: Tasks | None = None
        self.control: TaskControl | None = None
        # the admission limits of ``tasks`` (see Tasks); the app's unless set before start
        self.max_pending: int | None = app.max_pending
        self.max_pending_node: int | None = app.max_pending_node

    async def start(self, node: Node) -> None:
        self.node_id = node.id
        install_redactor()  # every log line the node writes (its own and its agents') is redacted
        # agents resolve secrets in their own processes: the node learns the vault's values
        # so it can remove them from what agents write past logging (raw fd 1 and 2 output)
        await asyncio.to_thread(learn_vault_secrets)
        # The API's views use the output tier. Its NER model is not loaded here: it loads in
        # the worker thread of the first view that needs it (server/_http.py:redacted_off_loop),
        # so a node that serves no such view never pays its 1-2 s of CPU and ~100 MB (warming
        # it while the node started took half of each start's CPU, and delayed readiness).
        provision_sim_key(self.app, node.events)  # before any agent resolves it
        if self.sim_port is not None:
            self.sim = SimServer(port=self.sim_port, scenario=self.app.scenario)
            await asyncio.to_thread(self.sim.start)
        self.store = store_from_url(self.store_url, events=node.events)
        await self.store.open()
        self.tasks = Tasks(
            node,
            self.store,
            self.app,
            max_pending=self.max_pending,
            max_pending_node=self.max_pending_node,
            store_url=self.store_url,
        )
        node.tasks = self.tasks
        node.cluster_view = self._cluster_view
        store = self.store

        # Ready only while the store accepts writes; answers within 1 s (see WriteProbe).
        node.readiness.add("store", WriteProbe(store.probe))
        sim_url = self.sim_url or (f"http://127.0.0.1:{self.sim_port}" if self.sim_port else None)
        for chain, models in self.app.models.items():
            health = _chain_health(self.app, chain, list(models), sim_url)
            node.readiness.add(f"model:{chain}", health.check, critical=False)
        await self.store.register_node(
            node.id,
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "version": stalwart_version(),
                "agents": [a.name for a in self.app.agents],
            },
        )
        # a task whose step kills its agent process is failed or quarantined before the
        # agent restarts (see _quarantine.py)
        guard = PoisonGuard(self.app, self.store, node.id, node.events)
        node.runtime.host.add_exit_hook(guard.on_exit)
        self._beat = asyncio.create_task(self._heartbeat(node.id))
        self.control = TaskControl(
            node, self.store, self.store_url, [a.name for a in self.app.agents]
        )
        self.tasks.control = self.control
        self._sweep = asyncio.create_task(self.control.run())
        self._charger = DeadCallCharger(self.app, self.store_url, node.id, node.events)

    async def _cluster_view(self) -> list[dict[str, Any]]:
        """Every node registered in the store; ``alive`` while its heartbeat is fresh."""
        assert self.store is not None
        now = time.time()
        return [
            {
                "id": n.id,
                "self": n.id == self.node_id,
                "info": n.info,
                "started_at": n.started_at,
                "heartbeat_at": n.heartbeat_at,
                "alive": now - n.heartbeat_at < 3 * HEARTBEAT_SECONDS,
            }
            for n in await self.store.list_nodes()
        ]

    async def _heartbeat(self, node_id: str) -> None:
        """Keep this node's registry entry fresh (what ``/v1/cluster`` shows)."""
        assert self.store is not None
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self.store.node_heartbeat(node_id)
            except StoreError:
                pass  # readiness reports the store; the next beat tries again

    async def stop(self) -> None:
        set_redactor(None)  # the node is done; a process hosting several (tests) starts clean
        charger: DeadCallCharger | None = getattr(self, "_charger", None)
        if charger is not None:
            await charger.close()
        loops = ("_beat", "_sweep")
        for loop in (getattr(self, name, None) for name in loops):
            if loop is not None:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)
        if self.control is not None:
            await self.control.close()
        if self.store is not None:
            try:
                await self.store.unregister_node(self.node_id)
            except StoreError:
                pass
            await self.store.close()
        if self.sim is not None:
            await asyncio.to_thread(self.sim.stop)


def check_importable(app_ref: str, app: App) -> None:
    """Raise a :class:`ConfigError` saying what to move when the app, or a function or tool
    of its agents, is defined in ``__main__`` (a notebook cell, ``python -c``, an
    interactive session, the script being run): each agent runs in a process of its own
    that imports the app by its ``module:attribute`` reference, where ``__main__`` is
    another module, so the agent would only fail to start."""
    found: list[str] = []
    if app_ref.partition(":")[0] in ("__main__", "__mp_main__"):
        found.append(f"the app {app_ref!r}")
    for agent in app.agents:
        code: list[tuple[str, Any]] = []
        if isinstance(agent, PythonAgent):
            code.append((f"the function of agent {agent.name!r}", agent.fn))
        code += [(f"tool {t.name!r} of agent {agent.name!r}", t.fn) for t in agent.tools]
        found += [f"{what} ({fn.__qualname__})" for what, fn in code
                  if fn is not None and fn.__module__ in ("__main__", "__mp_main__")]  # fmt: skip
    if found:
        raise ConfigError(
            "cannot start an app from __main__ (a notebook cell, `python -c`, the script "
            f"being run): {', '.join(found)} {'is' if len(found) == 1 else 'are'} defined "
            "there. Agent classes, functions and tools must live in an importable module: "
            "each agent runs in a process of its own, which imports the app by its "
            "'module:attribute' reference. Put the App and its code in a file (say myapp.py, "
            "beside the notebook) and start it as app_node('myapp:app') or `stalwart run "
            "myapp:app`"
        )


def app_node(
    app_ref: str,
    *,
    store: str | None = None,
    node_id: str | None = None,
    settings: RuntimeSettings | None = None,
    events: EventBus | None = None,
    services: tuple[NodeService, ...] = (),
) -> tuple[Node, AppService]:
    """A node running the app named ``app_ref`` (``module:attribute``).

    One supervised :class:`~stalwart.agent.TaskAgent` process per agent, in a
    ``one_for_one`` tree with the app's restart intensity. Returns the node and
    its :class:`AppService` (whose ``tasks`` submits work once the node runs).
    """
    app = load_app(app_ref)
    check_importable(app_ref, app)  # a notebook's app: a clear error, not a failed start
    app.check_prices()  # an unpriced model stops the start here, on stderr, not in an agent
    if events is None:
        events = RedactingEventBus()
    # the fork server loads the output redactor's model and the token counter once, for
    # every agent it forks (stalwart.agent._warm), then the app's module
    preload = ["stalwart.agent._warm"]
    if not app_ref.endswith(".toml"):
        preload.append(app_ref.partition(":")[0])
    store_url = store or app.store
    if "://" not in store_url:
        raise ConfigError(f"store {store_url!r} is not a store URL (sqlite:///file.db, ...)")
    # sim=True: use the simulated world at $STALWART_SIM_URL when one is given (several
    # nodes sharing one sim, so its per-key delivery counts see every node), else start one
    external_sim = os.environ.get("STALWART_SIM_URL") if app.sim else None
    sim_port = _free_port() if app.sim and not external_sim else None
    nid = node_id or f"{socket.gethostname()}-{os.getpid()}"
    args: dict[str, Any] = {"app": app_ref, "store": store_url, "node": nid}
    if sim_port is not None:
        args["sim_url"] = f"http://127.0.0.1:{sim_port}"
    elif external_sim:
        args["sim_url"] = external_sim
    children = [
        ChildSpec(
            a.name,
            TaskAgent,
            args=args,
            restart=a.restart,
            memory_limit_mb=a.memory_limit_mb,
            shutdown=10.0,
        )
        for a in app.agents
    ]
    root = SupervisorSpec("root", children, intensity=app.intensity, period=app.period)
    service = AppService(app, store_url, sim_port, external_sim)
    node = Node(
        root, settings, node_id=nid, events=events, preload=preload, services=(service, *services)
    )
    return node, service
