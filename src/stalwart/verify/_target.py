"""The live node a verification runs against: an app started for it, with its sim."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pathlib
import random
import shutil
import signal
import time
from collections.abc import Callable
from typing import Any, TextIO

from stalwart.agent._taskagent import secret_resolver
from stalwart.config import RuntimeSettings, load_ref
from stalwart.durable import TaskRecord
from stalwart.errors import ConfigError, StalwartError
from stalwart.guard import SecretProvider, provider_from_env
from stalwart.llm.sim import SimServer
from stalwart.node import AppService, Node, Tasks, app_node
from stalwart.observe import Event, EventBus, configure_logging
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
[[rule]]
name = "TasksShed"
window_s = 8
"""


SECRETS_ENV = ("STALWART_SECRETS", "STALWART_VAULT", "STALWART_VAULT_KEY_FILE")
"""The variables that choose the secrets provider (set for the verify run, then restored)."""


class Target:
    """Starts ``app_ref`` on a fresh SQLite store in ``workdir``; stops it on exit.

    Checks reach the node (``node``), its task API (``tasks``), the simulated
    world (``sim``) and every event the node emitted (``events`` / ``wait_event``).

    Secrets: ``secrets_kind`` is the provider the environment configures (what SE-1
    judges). Unless that is the env provider, the node runs on a local vault of its
    own in ``workdir`` (``secrets``): the sim's key is created there when the node
    starts, and SE-1 rotates it there -- your vault or secrets manager is never
    written to. The variables are set for the run (agent processes inherit them)
    and restored on exit.
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

    def _use_own_vault(self) -> None:
        self.secrets_kind = os.environ.get("STALWART_SECRETS", "vault")
        self._saved_env = {k: os.environ.get(k) for k in SECRETS_ENV}
        if self.secrets_kind != "env":
            os.environ["STALWART_SECRETS"] = "vault"
            os.environ["STALWART_VAULT"] = str(self.workdir / "vault.enc")
            os.environ["STALWART_VAULT_KEY_FILE"] = str(self.workdir / "vault.key")
        secret_resolver.cache_clear()  # this process's resolver follows the variables
        self.secrets: SecretProvider = provider_from_env()

    def _restore_env(self) -> None:
        for key, value in getattr(self, "_saved_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        secret_resolver.cache_clear()

    def _ensure_logging(self) -> None:
        """The node's log store (MA-5, GD-3, EH-4 and SE-4 search it) is fed by the logging
        pipeline: a process that configured none (``run_verify`` called as a library) gets
        one writing to ``workdir/node.log`` for the run, removed on exit."""
        import structlog

        self._log_file: TextIO | None = None
        if not structlog.is_configured():
            self._log_file = open(self.workdir / "node.log", "a")  # noqa: SIM115 - closed on exit
            configure_logging(stream=self._log_file)

    def _restore_logging(self) -> None:
        import structlog

        log_file = getattr(self, "_log_file", None)
        if log_file is not None:
            configure_logging(stream=log_file, capture_stdlib=False)  # the stdlib bridge off
            structlog.reset_defaults()
            log_file.close()
            self._log_file = None

    def _lock_workdir(self) -> None:
        """One run per work dir (two would share its store, vault and log store), which
        is verify's own: emptied once the lock is held (a previous run's store would
        clash with task ids). The lock file sits beside it, so emptying keeps it."""
        self.workdir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.workdir.parent / ".verify.lock"
        self._lock = open(lock_path, "a")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ConfigError(
                f"another stalwart verify is running in {self.workdir.parent}: give this "
                "one another --out directory"
            ) from None
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)

    def _unlock_workdir(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None and not lock.closed:
            lock.close()  # closing the file releases the lock

    async def __aenter__(self) -> Target:
        await asyncio.to_thread(self._lock_workdir)
        try:
            self._use_own_vault()
            self._ensure_logging()
            await self._start()
        except BaseException:
            await self.__aexit__()  # the variables, the logging and the lock are given back
            raise
        return self

    async def _start(self) -> None:
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
            # Heartbeats every 0.5 s ship metrics and events to the node promptly; an agent
            # counts as hung only after 2 s of silence (4 missed), not 0.75 s: on a busy
            # machine a starting or CPU-starved agent was killed as hung again and again
            # (a restart storm the checks then measured instead of the app).
            settings=RuntimeSettings(heartbeat_interval=0.5, hang_after_missed=4.0),
            services=(self.http,),
        )
        self._run = asyncio.create_task(self.node.run(until=self._stop))
        async with asyncio.timeout(60):
            while not self.node.ready:
                if self._run.done():
                    why = [str(e.fields.get("error")) for e in self.events("node_start_failed")]
                    raise StalwartError(
                        f"the app {self.app_ref!r} did not start" + (f": {why[-1]}" if why else "")
                    )
                await asyncio.sleep(0.01)

    async def __aexit__(self, *exc: object) -> None:
        try:
            if not self._stop.done():
                self._stop.set_result(None)
            if self._run is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(60):
                        await self._run
            if hasattr(self, "receiver"):
                await self.receiver.close()
        finally:
            self._restore_env()
            self._restore_logging()
            self._unlock_workdir()

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
