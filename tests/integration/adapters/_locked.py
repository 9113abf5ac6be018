"""A store write that fails inside a hosted framework's run, run in this process.

Shared by the adapters' tests of a store failure the framework swallows (a tool's exception
turned into text for the model, or into a retry): one of the example apps' agents, a real
simulated provider (its requests counted where it answers) and a real SQLite store with a
busy timeout of 1 s; another connection takes the store's write lock (``BEGIN IMMEDIATE``)
from inside the agent's refund, just after the payment service delivered it, so the ledger's
record of the refund cannot be written. :func:`locked_out_run` runs the task (the runner
must raise the store's error), lets the lock go and resumes the task with a second runner,
as a node does with a task given back.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stalwart.agent import App, PythonAgent, Resources, TaskContext
from stalwart.agent._guarded import prepare_input
from stalwart.agent._setup import build_models, secret_resolver
from stalwart.durable import Runner, SQLiteStore, TaskResult
from stalwart.errors import StoreUnavailable
from stalwart.llm.sim import Scenario, SimServer
from stalwart.node._simkey import provision_sim_key
from stalwart.observe import EventBus
from stalwart.resilience import BreakerRegistry
from stalwart.tools import ToolRegistry


def own_sim(app: App, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Set up (as a generator fixture's body) what a node gives the app's process: the sim's
    key provisioned in a vault of this test's own under ``tmp_path`` (never one another
    test or a node run in the checkout left behind), and ``STALWART_SIM_URL`` unset again
    afterwards (later tests in this process must not inherit the address of a sim that
    has stopped)."""
    monkeypatch.setenv("STALWART_SIM_URL", "")
    monkeypatch.delenv("STALWART_SIM_URL")
    monkeypatch.setenv("STALWART_SECRETS", "vault")
    monkeypatch.setenv("STALWART_VAULT", str(tmp_path / "vault.enc"))
    monkeypatch.setenv("STALWART_VAULT_KEY_FILE", str(tmp_path / "vault.key"))
    assert provision_sim_key(app, EventBus(log=False))  # created: the vault was empty
    secret_resolver.cache_clear()  # this process's resolver reads the vault set above
    yield
    secret_resolver.cache_clear()  # later tests resolve from their own environment


class WriteLock:
    """Another connection to the store's file that takes its write lock when asked."""

    def __init__(self, path: pathlib.Path) -> None:
        # taken from the sim's thread too (when a model answer arrives)
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=5, check_same_thread=False)

    def take(self) -> None:
        """Hold the write lock until :meth:`close` (every write of the store times out)."""
        self._conn.execute("BEGIN IMMEDIATE")

    def close(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._conn.close()


@dataclasses.dataclass
class LockedOut:
    """What happened: the error the first run ended with, model requests at the provider
    before the resumed run began and in all, the resumed run's result, the sim's tool
    report (deliveries, duplicates)."""

    error: StoreUnavailable
    requests_before: int
    requests: int
    result: TaskResult
    report: dict[str, Any]


def _requests(sim: SimServer) -> int:
    return sum(v for k, v in sim.world.stats.items() if k.endswith(":requests"))


async def locked_out_run(
    path: pathlib.Path,
    app: App,
    agent: PythonAgent,
    scenario: Scenario,
    ticket: Any,
    *,
    chain: str,
    lock: WriteLock,
    arm: Callable[[SimServer], None] | None = None,
) -> LockedOut:
    """Run ``ticket`` on ``agent`` (its tools, or ``arm(sim)`` given the started sim, take
    ``lock`` where the test chose); the run must end in :class:`StoreUnavailable`. Then
    resume the task with another runner."""
    assert agent.fn is not None
    fn = agent.fn
    with SimServer(scenario=scenario) as sim:
        os.environ["STALWART_SIM_URL"] = sim.url  # the tools' services (own_sim restores it)
        if arm is not None:
            arm(sim)
        events = EventBus(log=False)
        models = build_models(app, {chain}, sim.url, events)
        # the locked write fails after this; the others must not, on two busy cores (a
        # full-durability commit waits for the disk; 0.5 s left little room for a slow fsync)
        store = SQLiteStore(str(path), timeout=1.0)
        await store.open()
        resources = Resources(
            agent=agent.name, models=models,
            tools=ToolRegistry(agent.tools, breakers=BreakerRegistry()),
            scopes=frozenset(agent.scopes), callable_agents=frozenset(), runtime=None,
            events=events, prices=app.price_table(), security=agent.security,
        )  # fmt: skip

        async def workflow(ctx: Any, value: Any) -> Any:
            task = TaskContext(ctx, resources, model=chain)
            return await fn(task, prepare_input(task, value))  # as TaskAgent does

        try:
            first = Runner(store, owner="a", events=events)
            task_id = await first.submit(agent.name, ticket)
            try:
                with pytest.raises(StoreUnavailable) as raised:
                    await first.run(task_id, workflow)
            finally:
                lock.close()
            before = _requests(sim)
            second = Runner(store, owner="b", events=events)
            result = await second.run(task_id, workflow, force=True)
            report = sim.world.tools.report()
            return LockedOut(raised.value, before, _requests(sim), result, report)
        finally:
            await store.close()
            await models[chain].aclose()
