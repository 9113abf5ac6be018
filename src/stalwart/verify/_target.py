"""The live node a verification runs against: an app started for it, with its sim."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import random
import signal
import time
from collections.abc import Callable
from typing import Any

from stalwart.config import RuntimeSettings, load_ref
from stalwart.durable import TaskRecord
from stalwart.errors import StalwartError
from stalwart.llm.sim import SimServer
from stalwart.node import AppService, Node, Tasks, app_node
from stalwart.observe import Event, EventBus
from stalwart.server import ObservabilityService, ServerSettings
from stalwart.verify._receiver import Receiver

__all__ = ["Target"]


VERIFY_RULES = """
# stalwart verify: the prolonged-degradation alert with `for` times short enough to
# demonstrate (the defaults are 120 s and 900 s); the report shows the values used.
[[rule]]
name = "ProlongedDegradation"
warning = {value = 1, for_s = 3}
critical = {value = 1, for_s = 6}

# MA-3 makes every rule fire for real and resolve: `for` times and windows shortened
# (thresholds kept, except memory growth: 64/192 MiB in 8 s instead of 256 MiB/1 GiB in 30 min)
[[rule]]
name = "ModelErrorRate"
window_s = 5
warning = {value = 0.05, for_s = 1}
critical = {value = 0.25, for_s = 1}
[[rule]]
name = "BreakerOpen"
critical = {value = 1, for_s = 3}
[[rule]]
name = "RestartStorm"
window_s = 8
[[rule]]
name = "TaskFailureRate"
window_s = 5
warning = {value = 0.05, for_s = 1}
critical = {value = 0.2, for_s = 1}
[[rule]]
name = "MemoryGrowth"
window_s = 8
warning = {value = 67108864, for_s = 1}
critical = {value = 201326592, for_s = 1}
[[rule]]
name = "ReadinessFailing"
warning = {value = 1, for_s = 1}
critical = {value = 1, for_s = 3}
"""


class Target:
    """Starts ``app_ref`` on a fresh SQLite store in ``workdir``; stops it on exit.

    Checks reach the node (``node``), its task API (``tasks``), the simulated
    world (``sim``) and every event the node emitted (``events`` / ``wait_event``).
    """

    def __init__(self, app_ref: str, workdir: pathlib.Path, *, seed: int = 7) -> None:
        self.app_ref = app_ref
        self.workdir = workdir
        self.seed = seed
        self.rng = random.Random(seed)
        self.bus = EventBus(log=False)
        self.seen: list[Event] = []
        self._changed = asyncio.Condition()
        self.bus.subscribe(self._record)
        self._stop = asyncio.get_running_loop().create_future()
        self._run: asyncio.Task[int] | None = None
        self.node: Node
        self.service: AppService

    def _record(self, event: Event) -> None:
        self.seen.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def __aenter__(self) -> Target:
        self.workdir.mkdir(parents=True, exist_ok=True)
        store = f"sqlite:///{self.workdir}/verify.db"
        # the node's real HTTP service (probes, /metrics, logs, alerts) on a free loopback
        # port, its alert notifications delivered to a receiver here; the prolonged-
        # degradation rule's `for` times are shortened so GD-3 can hold one past them
        self.receiver = await Receiver().start()
        rules = self.workdir / "verify-alerts.toml"
        rules.write_text(VERIFY_RULES)
        self.http = ObservabilityService(
            ServerSettings(
                port=0,
                log_db=str(self.workdir / "logs.db"),
                alert_interval_s=0.5,
                webhook_url=self.receiver.url,
                alert_rules=str(rules),
            )
        )
        self.node, self.service = app_node(
            self.app_ref,
            store=store,
            events=self.bus,
            settings=RuntimeSettings(heartbeat_interval=0.5),
            services=(self.http,),
        )
        self._run = asyncio.create_task(self.node.run(until=self._stop))
        async with asyncio.timeout(60):
            while not self.node.ready:
                if self._run.done():
                    raise StalwartError(f"the app {self.app_ref!r} did not start")
                await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._stop.done():
            self._stop.set_result(None)
        if self._run is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(60):
                    await self._run
        await self.receiver.close()

    # -- what checks use ---------------------------------------------------------------------
    @property
    def tasks(self) -> Tasks:
        assert self.service.tasks is not None
        return self.service.tasks

    @property
    def sim(self) -> SimServer:
        if self.service.sim is None:
            raise StalwartError("this verification needs the app to run with sim=True")
        return self.service.sim

    def agent_names(self) -> list[str]:
        return [a.name for a in self.service.app.agents]

    def pid(self, agent: str) -> int | None:
        ref = self.node.runtime.whereis(agent)
        return ref.pid if ref is not None else None

    def kill(self, agent: str, sig: int = signal.SIGKILL) -> int | None:
        pid = self.pid(agent)
        if pid is not None:
            os.kill(pid, sig)
        return pid

    def events(self, name: str, **fields: Any) -> list[Event]:
        return [
            e
            for e in self.seen
            if e.name == name and all(e.fields.get(k) == v for k, v in fields.items())
        ]

    async def wait_event(
        self,
        name: str,
        *,
        timeout: float,
        after: float = 0.0,
        where: Callable[[Event], bool] | None = None,
        **fields: Any,
    ) -> Event:
        def found() -> list[Event]:
            return [
                e
                for e in self.events(name, **fields)
                if e.ts >= after and (where is None or where(e))
            ]

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: bool(found()))
        return found()[0]

    @property
    def entry(self) -> str:
        app = self.service.app
        return app.entry or app.agents[0].name

    def workload(self, count: int, seed: int | None = None) -> list[Any]:
        """``count`` task inputs from the app's workload generator (the same per seed)."""
        ref = self.service.app.workload
        if not ref:
            raise StalwartError(
                "the app names no workload (App.workload = 'module:function(count, seed)'); "
                "verifications that drive load need one"
            )
        generate = load_ref(ref, "workload")
        return list(generate(count, seed=self.seed if seed is None else seed))

    async def submit_all(self, inputs: list[Any], *, prefix: str) -> list[str]:
        return [
            await self.tasks.submit(self.entry, value, task_id=f"{prefix}-{n:05d}", seed=self.seed)
            for n, value in enumerate(inputs)
        ]

    async def run_all(
        self, inputs: list[Any], *, prefix: str, timeout: float = 120.0
    ) -> list[TaskRecord]:
        ids = await self.submit_all(inputs, prefix=prefix)
        return [await self.tasks.wait(i, timeout=timeout) for i in ids]

    @staticmethod
    def now() -> float:
        return time.time()
