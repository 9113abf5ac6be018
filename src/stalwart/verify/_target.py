"""The live node a verification runs against: an app started for it, with its sim."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import pathlib
import random
import shutil
import signal
import time
from collections.abc import Callable
from typing import Any, TextIO

from stalwart.agent import App
from stalwart.agent._profile import fault_mode
from stalwart.agent._setup import load_app, secret_resolver
from stalwart.chaos import FaultProxy
from stalwart.config import RuntimeSettings, load_ref
from stalwart.durable import TaskRecord
from stalwart.errors import ConfigError, NotExercised, StalwartError
from stalwart.guard import SecretProvider, provider_from_env
from stalwart.llm.sim import SimServer
from stalwart.node import AppService, Node, Tasks, app_node
from stalwart.observe import Event, EventBus, configure_logging
from stalwart.server import ObservabilityService, ServerSettings
from stalwart.tools._verifying import BLOCKED_ENV, PROXIED_ENV, VERIFY_DIR_ENV
from stalwart.verify._receiver import Receiver
from stalwart.verify._tool_proxy import DoubleFault, ToolFault, ToolProxies, proxy_decls

__all__ = ["SEED", "Target"]


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


SEED = 7
"""Verify's seed (workloads, fault plans): the same run on the same app replays."""
SECRETS_ENV = ("STALWART_SECRETS", "STALWART_VAULT", "STALWART_VAULT_KEY_FILE")
VERIFY_ENV = (VERIFY_DIR_ENV, BLOCKED_ENV, PROXIED_ENV)
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

    def __init__(
        self,
        app_ref: str,
        workdir: pathlib.Path,
        *,
        seed: int = SEED,
        allow_real_side_effects: bool = False,
        manifest: pathlib.Path | None = None,
    ) -> None:
        self.app_ref = app_ref
        self.allow_real_side_effects = allow_real_side_effects
        self.manifest = manifest
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
        self.item = ""
        """The item being verified (for progress lines)."""
        self.on_progress: Callable[[str], None] | None = None
        self._model_inputs: dict[tuple[int, int], list[Any]] = {}
        self._probes = itertools.count()
        self._stopped_by_us = False
        self.generation = 0
        """How many times the node under test was started (a fresh one per restart)."""
        self.started_at = 0.0

    def _record(self, event: Event) -> None:
        self.seen.append(event)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _use_own_vault(self) -> None:
        self.secrets_kind = os.environ.get("STALWART_SECRETS", "vault")
        self._saved_env = {k: os.environ.get(k) for k in SECRETS_ENV + VERIFY_ENV}
        if self.secrets_kind != "env":
            os.environ["STALWART_SECRETS"] = "vault"
            os.environ["STALWART_VAULT"] = str(self.workdir / "vault.enc")
            os.environ["STALWART_VAULT_KEY_FILE"] = str(self.workdir / "vault.key")
        secret_resolver.cache_clear()  # this process's resolver follows the variables
        self.secrets: SecretProvider = provider_from_env()

    def _use_tool_switches(self) -> None:
        """Tools in the agent processes see verify's switches (stalwart.tools._verifying):
        the down files, the doubles, the blocked real side effects, the delivery keys."""
        self.tools_dir = self.workdir / "tools"
        (self.tools_dir / "down").mkdir(parents=True, exist_ok=True)
        os.environ[VERIFY_DIR_ENV] = str(self.tools_dir)
        # the node is not started yet: the app's declaration, loaded as the node will
        app = load_app(self.app_ref)
        blocked = [] if self.allow_real_side_effects else blocked_tools(app)
        os.environ[BLOCKED_ENV] = ",".join(blocked)
        # tools in proxy mode: a fault proxy in front of each upstream, and the variable
        # each tool reads its URL from pointed at it (restored on exit)
        self.proxies = ToolProxies(proxy_decls(app))
        for var, value in self.proxies.environment().items():
            self._saved_env.setdefault(var, os.environ.get(var))
            os.environ[var] = value

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
            self._use_tool_switches()
            await self.proxies.start()
            self._ensure_logging()
            await self._start()
        except BaseException:
            await self.__aexit__()  # the variables, the logging and the lock are given back
            raise
        return self

    @property
    def store_url(self) -> str:
        """The store of the node under test (a fresh file for each node started)."""
        suffix = "" if self.generation <= 1 else f"-{self.generation}"
        return f"sqlite:///{self.workdir}/verify{suffix}.db"

    async def _start(self) -> None:
        self.generation += 1
        self.started_at = time.time()
        self._stop = asyncio.get_running_loop().create_future()
        # (the node cancels the future it was given when it stops, whoever stopped it)
        self._stopped_by_us = False
        store = self.store_url
        # the node's real HTTP service (probes, /metrics, logs, alerts) on a free loopback
        # port, its alert notifications delivered to a receiver here; the prolonged-
        # degradation rule's `for` times are shortened so GD-3 can hold one past them
        self.receiver = await Receiver().start()
        rules = self.workdir / "verify-alerts.toml"
        log_name = "logs.db" if self.generation <= 1 else f"logs-{self.generation}.db"
        log_db = self.workdir / log_name
        rules.write_text(VERIFY_RULES)
        self.http = ObservabilityService(
            ServerSettings(
                port=0,
                log_db=str(log_db),
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
            # A start (the fork server importing the app, an agent's first ready) may take
            # 90 s, not 30: on a loaded machine a framework-heavy app's fork server took
            # over 30 s to import, and the whole run stopped before its first item.
            settings=RuntimeSettings(
                heartbeat_interval=0.5, hang_after_missed=4.0, start_timeout=90.0
            ),
            services=(self.http,),
        )
        self._run = asyncio.create_task(self.node.run(until=self._stop))
        async with asyncio.timeout(120):  # past the start_timeout above
            while not self.node.ready:
                if self._run.done():
                    why = [str(e.fields.get("error")) for e in self.events("node_start_failed")]
                    raise StalwartError(
                        f"the app {self.app_ref!r} did not start" + (f": {why[-1]}" if why else "")
                    )
                await asyncio.sleep(0.01)

    async def _stop_node(self) -> None:
        self._stopped_by_us = True
        if not self._stop.done():
            self._stop.set_result(None)
        if self._run is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(60):
                    await self._run
            self._run = None
        if hasattr(self, "receiver"):
            await self.receiver.close()
            del self.receiver

    def health(self) -> str | None:
        """Why the node under test cannot serve the next item (None: it can): its run
        ended, its root supervisor gave up, it is not ready, or an agent has no process."""
        if self._run is None or self._run.done():
            return "the node exited"
        if self.node.runtime.failed.done():
            return "the root supervisor gave up (restart intensity exceeded)"
        if not self.node.ready:
            return "the node is not ready"
        missing = [a for a in self.agent_names() if self.pid(a) is None]
        if missing:
            return f"agent(s) {', '.join(missing)} have no process"
        return None

    async def stopped_by_signal(self) -> bool:
        """The node under test stopped cleanly though verify did not stop it: SIGTERM or
        SIGINT reached this process (the node stops on them), so verify stops too. A
        node not ready that verify did not stop is given a few seconds to finish
        stopping (a signal's stop takes its agents down first)."""
        run = self._run
        if run is not None and not run.done() and not self.node.ready and not self._stopped_by_us:
            await asyncio.wait({run}, timeout=5)
        return (
            run is not None
            and run.done()
            and not run.cancelled()
            and run.exception() is None
            and run.result() == 0
            and not self._stopped_by_us
        )

    def restarts_in_period(self) -> int:
        """Agent restarts on this node within the app's restart period (what its root
        supervisor's intensity counts)."""
        horizon = max(self.started_at, time.time() - self.service.app.period)
        return sum(1 for e in self.events("agent_restarted") if e.ts >= horizon)

    async def restart(self) -> None:
        """Stop the node under test and start a fresh one (its own store and log store):
        one item's damage never reaches the next."""
        await self._stop_node()
        await self._start()

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._stop_node()
            proxies = getattr(self, "proxies", None)
            if proxies is not None:
                await proxies.stop()
        finally:
            self._restore_env()
            self._restore_logging()
            self._unlock_workdir()

    # -- what checks use ---------------------------------------------------------------------
    def say(self, doing: str) -> None:
        """Report what the current item is doing now (the terminal and the log show it)."""
        if self.on_progress is not None:
            self.on_progress(doing)

    @property
    def tasks(self) -> Tasks:
        assert self.service.tasks is not None
        return self.service.tasks

    @property
    def sim(self) -> SimServer:
        if self.service.sim is None:
            raise NotExercised(
                "this item faults the app's models through the simulated provider, and the "
                "app runs without it (it calls no model, or App.sim is off)",
                fix="nothing to add if the app calls no model; otherwise set App(sim=True) "
                "(TOML: sim = true) so verify can stand the simulated provider in",
            )
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
        return self.service.app.entry_agent

    def workload(self, count: int, seed: int | None = None) -> list[Any]:
        """``count`` task inputs from the app's workload generator (the same per seed)."""
        ref = self.service.app.workload
        if not ref:
            raise NotExercised(
                "the app names no workload: verify has no task inputs to drive it with",
                fix="set App.workload = 'module:function', a function of (count, seed) "
                "returning task inputs for the entry agent (docs/verify.md, The profile)",
            )
        generate = load_ref(ref, "workload")
        return list(generate(count, seed=self.seed if seed is None else seed))

    async def model_inputs(self, count: int, *, seed: int, scan: int = 40) -> list[Any]:
        """Up to ``count`` workload inputs whose tasks call a model: each candidate is run
        once, unfaulted, and kept when the simulated provider saw a request during it (a
        generic signal: no knowledge of what the inputs say). Call it before setting a
        fault; the choice is kept per (count, seed)."""
        cached = self._model_inputs.get((count, seed))
        if cached is not None:
            return cached
        found: list[Any] = []
        for value in self.workload(scan, seed=seed):
            before = time.monotonic()
            await self.run_all([value], prefix=f"probe{seed}-{next(self._probes)}")
            if any(q and q[-1] >= before for q in self.sim.world.arrivals.values()):
                found.append(value)
                if len(found) >= count:
                    break
        self._model_inputs[(count, seed)] = found
        if not found:
            raise NotExercised(
                f"none of {scan} workload inputs (seed {seed}) made a model call",
                fix="make the workload reach the agents that call models",
            )
        return found

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

    # -- the app's tools, as its verification profile declares them ------------------------------
    @property
    def app(self) -> App:
        return self.service.app

    def tool_modes(self) -> dict[str, tuple[str, str]]:
        return tool_modes(self.app)

    def side_effect_tools(self) -> list[str]:
        return side_effect_tools(self.app)

    def blocked_tools(self) -> list[str]:
        """Side-effect tools whose real function must not run during this verification."""
        return [] if self.allow_real_side_effects else blocked_tools(self.app)

    def proxied_tools(self) -> list[str]:
        """The tools whose upstream is behind one of verify's fault proxies."""
        return self.proxies.tools

    def proxy(self, tool: str) -> FaultProxy:
        """The fault proxy in front of ``tool``'s upstream (a proxied tool)."""
        return self.proxies.proxy(tool)

    def fault_tools(self) -> list[str]:
        """The tools whose dependency verify can fault: the proxied ones (at their fault
        proxy) and those that run their double (at the double's switch)."""
        doubles = [n for n, (mode, _) in self.tool_modes().items() if mode == "double"]
        return sorted({*self.proxied_tools(), *doubles})

    def tool_fault(self, tool: str) -> ToolFault:
        """Where ``tool`` is faulted: its fault proxy, else its double's switch."""
        if tool in self.proxies.tools:
            return self.proxies.proxy(tool)
        return DoubleFault(self.tools_dir, tool)

    def describe_fault(self, tool: str) -> dict[str, object]:
        """For the evidence: the proxy and its upstream, or the double's switch."""
        if tool in self.proxies.tools:
            return self.proxies.describe(tool)
        return DoubleFault(self.tools_dir, tool).describe()

    def take_down(self, tool: str) -> None:
        (self.tools_dir / "down" / tool).touch()

    def bring_up(self, tool: str) -> None:
        (self.tools_dir / "down" / tool).unlink(missing_ok=True)

    def refused_calls(self, tool: str) -> int:
        """Calls of ``tool`` refused while it was down (verify's proof it was exercised)."""
        try:
            return len((self.tools_dir / "down" / f"{tool}.hits").read_text().splitlines())
        except FileNotFoundError:
            return 0

    def deliveries(self) -> dict[str, dict[str, int]]:
        """Per side-effect tool, deliveries per idempotency key (doubles and real targets)."""
        out: dict[str, dict[str, int]] = {}
        for path in sorted((self.tools_dir / "calls").glob("*.keys")):
            counts: dict[str, int] = {}
            for key in path.read_text().splitlines():
                counts[key] = counts.get(key, 0) + 1
            out[path.name.removesuffix(".keys")] = counts
        return out


def _tools(app: App) -> dict[str, Any]:
    return {t.name: t for a in app.agents for t in a.tools}


def tool_modes(app: App) -> dict[str, tuple[str, str]]:
    """Per tool, how verify may fault it: ("double", ""), ("sim", service), ("proxy",
    "VAR[=url]") or ("none", "")."""
    out: dict[str, tuple[str, str]] = {}
    for name, t in _tools(app).items():
        declared = app.verify.tools.get(name)
        if declared is not None:
            out[name] = fault_mode(declared)
        else:
            out[name] = ("double", "") if t.double is not None else ("none", "")
    return out


def side_effect_tools(app: App) -> list[str]:
    return sorted(name for name, t in _tools(app).items() if t.side_effect)


def blocked_tools(app: App) -> list[str]:
    """Side-effect tools that would reach their real target with neither a double, the
    sim nor a fault proxy the profile declared (a proxied tool reaches its loopback
    upstream: declaring the proxy is the user's choice of that target)."""
    modes = tool_modes(app)
    return [n for n in side_effect_tools(app) if modes[n][0] == "none"]
