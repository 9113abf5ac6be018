"""The system under test: an app on a node in this process, its store, sim and proxy.

The chaos, load and soak commands start the app ``app`` names (``module:attribute``
or a ``.toml`` file) with ``app_node`` on a fresh SQLite store in a temporary
directory (their CLI names a default app). When the app uses the sim, every agent
reaches it through a :class:`FaultProxy` (so network faults apply to model and
tool traffic alike). With ``quota_mb`` (root only) the store directory is a
tmpfs of that size, so the disk-full fault fills a small filesystem and never
the machine's disk; it is unmounted when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from stalwart.chaos._peer import PeerNode
from stalwart.chaos._proxy import FaultProxy
from stalwart.chaos._undo import UndoStack
from stalwart.config import RuntimeSettings
from stalwart.errors import ConfigError, GaveUp, StartError
from stalwart.llm.sim import SimServer
from stalwart.node import AppService, Node, Tasks, app_node
from stalwart.node._node import EXIT_ROOT_GAVE_UP
from stalwart.observe import EventBus
from stalwart.runtime import ChildSpec

__all__ = [
    "Target",
    "TargetConfig",
    "mount_quota",
    "run_target",
    "workload_failed",
    "workload_ref",
]


@dataclasses.dataclass(frozen=True, slots=True)
class TargetConfig:
    """What to start: the app, its store, and the run's settings."""

    app: str
    """The app to run (``module:attribute`` or a ``.toml`` file)."""
    store: str | None = None
    agent: str | None = None
    """The agent that receives the tasks; None: the app's ``entry`` (else its first)."""
    inputs: str | None = None
    """``module:function(count, seed)`` giving task inputs; None: the app's workload."""
    seed: int = 1
    proxy: bool = True
    quota_mb: int | None = None
    heartbeat: float = 0.5
    hang_after_missed: float = RuntimeSettings().hang_after_missed
    """Heartbeats an agent may miss before it counts as hung and is killed (the
    runtime's default; ``stalwart verify`` gives its load, chaos and soak nodes more,
    as it does its own node: on a busy machine a CPU-starved agent is otherwise killed
    as hung again and again, until the root supervisor gives up)."""
    max_pending: int | None = None
    peer: bool = False
    parent: str | None = None
    """Where the run's temporary directory (store, tmpfs quota) is made; None: the
    system's temporary directory. ``stalwart verify`` keeps its runs in its work dir."""


@dataclasses.dataclass
class Target:
    """A running app node, handed to the run's body."""

    node: Node
    service: AppService
    tasks: Tasks
    agent: str
    store_path: pathlib.Path | None
    proxy: FaultProxy | None
    undo: UndoStack
    quota_dir: pathlib.Path | None = None
    peer: PeerNode | None = None
    store_url: str = ""
    tool_proxies: Mapping[str, FaultProxy] = dataclasses.field(default_factory=dict)
    """Fault proxies in front of tools' upstreams, per tool (given to :func:`run_target`)."""

    @property
    def sim(self) -> SimServer | None:
        return self.service.sim

    def agent_names(self) -> list[str]:
        return [a.name for a in self.service.app.agents]

    def pids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name in self.agent_names():
            ref = self.node.runtime.whereis(name)
            if ref is not None:
                out[name] = ref.pid
        return out

    def side_effects(self) -> dict[str, Any] | None:
        """The sim services' per-key delivery report (None without the sim)."""
        return self.sim.world.tools.report() if self.sim is not None else None


def workload_ref(config: TargetConfig) -> str:
    """Where the run's task inputs come from: ``config.inputs``, else the app's workload."""
    if config.inputs:
        return config.inputs
    from stalwart.agent import load_app

    ref = load_app(config.app).workload
    if not ref:
        raise ConfigError(
            f"the app {config.app!r} declares no workload: pass --inputs module:function "
            "(count, seed), or set App.workload"
        )
    return ref


def workload_failed(summary: dict[str, Any], agent: str, what: str) -> str | None:
    """Why a run can tell nothing from its tasks, or None: ``summary`` (a driver's, of
    ``what``: tasks run with no fault injected) holds tasks, and every one failed.

    Such a run fails every task the same way with or without faults, and one that loses
    nothing and gives every failure a reason looked passed: ``stalwart load --app`` on the
    warehouse example, fed the demo's tickets, failed 40 of 40 tasks with ``KeyError:
    'sku'`` and printed PASSED. (Three workload tasks run before the run, as verify does,
    were tried first: on an app whose state is keyed by its input, a LangGraph thread,
    they changed the first task's result, and the comparison with the fault-free run
    failed.)"""
    if summary["completed"] or not summary["failed"]:
        return None
    seen = "; ".join(f"{n} x {e}" for e, n in list(summary["failures"].items())[:3])
    return (
        f"all {summary['failed']} {what} sent to agent {agent!r} failed with no fault "
        f"injected ({seen}): the run could tell nothing from its tasks. Check that the "
        "inputs fit the agent (--inputs, --agent; by default the app's workload and its "
        "entry agent), or run one task with `stalwart run` and `stalwart submit` to see "
        "why it fails"
    )


def load_inputs(ref: str, seed: int) -> Callable[[int], Any]:
    """``inputs(i)``: the i-th input of the generator ``ref`` (``generate(count, seed)``)."""
    import importlib

    module_name, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the input generator {ref!r}: {exc}") from exc
    cache: list[Any] = []

    def inputs(i: int) -> Any:
        while len(cache) <= i:  # generators are seeded: a longer list extends a shorter one
            cache[:] = list(fn(max(64, 2 * len(cache), i + 1), seed))
        return cache[i]

    return inputs


def mount_quota(path: pathlib.Path, size_mb: int, undo: UndoStack) -> None:
    """Mount a tmpfs of ``size_mb`` at ``path`` (root only); unmounted by ``undo``."""
    if os.geteuid() != 0:
        raise ConfigError("a store quota needs root (it mounts a size-limited tmpfs)")
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "stalwart-chaos", path],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"cannot mount a {size_mb} MB tmpfs at {path}: {exc}") from exc

    def unmount() -> None:
        for args in (["umount", str(path)], ["umount", "-l", str(path)]):
            done = subprocess.run(args, capture_output=True, timeout=10, check=False)
            if done.returncode == 0:
                return

    undo.push(f"tmpfs:{path}", unmount)


@contextlib.asynccontextmanager
async def _workdir(config: TargetConfig) -> AsyncIterator[pathlib.Path]:
    if config.parent is not None:
        os.makedirs(config.parent, exist_ok=True)
    root = pathlib.Path(tempfile.mkdtemp(prefix="stalwart-chaos-", dir=config.parent))
    infra = UndoStack()
    try:
        if config.quota_mb is not None:
            mount_quota(root, config.quota_mb, infra)
        yield root
    finally:
        infra.close()
        shutil.rmtree(root, ignore_errors=True)


async def run_target(
    config: TargetConfig,
    body: Callable[[Target], Awaitable[Any]],
    *,
    events: EventBus | None = None,
    proxy: bool | None = None,
    tool_proxies: Mapping[str, FaultProxy] | None = None,
) -> Any:
    """Start the app's node, run ``body(target)``, stop the node; returns what body returned.
    ``tool_proxies``: started fault proxies in front of tools' upstreams, per tool, that
    the body may fault (``Target.tool_proxies``; their owner starts and stops them).

    Every fault still in force when ``body`` ends (or raises, or is cancelled by
    SIGINT/SIGTERM) is undone before the node stops.
    """
    undo = UndoStack()
    async with _workdir(config) as workdir:
        store = config.store or f"sqlite:///{workdir}/store.db"
        store_path = pathlib.Path(store.removeprefix("sqlite:///")) if store.startswith(
            "sqlite:///"
        ) else None  # fmt: skip
        settings = RuntimeSettings(
            heartbeat_interval=config.heartbeat, hang_after_missed=config.hang_after_missed
        )
        node, service = app_node(
            config.app, store=store, events=events or EventBus(log=False), settings=settings
        )
        service.max_pending = config.max_pending  # the admission limit of its Tasks
        # the app's entry agent, as verify and `stalwart submit` take it
        agent = config.agent or service.app.entry_agent
        fault_proxy: FaultProxy | None = None
        if (config.proxy if proxy is None else proxy) and service.sim_port is not None:
            fault_proxy = FaultProxy(service.sim_port)
            for child in node.runtime.root_spec.children:
                if (
                    isinstance(child, ChildSpec)
                    and isinstance(child.args, dict)
                    and "sim_url" in child.args
                ):
                    child.args["sim_url"] = fault_proxy.url
        result: list[Any] = []
        errors: list[BaseException] = []

        async def work() -> None:
            if fault_proxy is not None:
                await fault_proxy.start()
            peer: PeerNode | None = None
            try:
                async with asyncio.timeout(60):
                    # the node offers no readiness event to wait on: poll it, bounded
                    while not node.ready:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                assert service.tasks is not None
                if config.peer and service.sim is not None:
                    sim_url = fault_proxy.url if fault_proxy is not None else service.sim.url
                    peer = PeerNode(config.app, store, sim_url)
                    undo.push("peer node", peer.close)  # stopped at the end, even at exit
                    await asyncio.to_thread(peer.start)
                target = Target(
                    node, service, service.tasks, agent, store_path, fault_proxy, undo,
                    workdir if config.quota_mb is not None else None,
                )  # fmt: skip
                target.peer = peer
                target.store_url = store
                target.tool_proxies = dict(tool_proxies or {})
                try:
                    result.append(await body(target))
                finally:
                    if peer is not None:
                        peer.closing = True  # a node_kill undone now restarts nothing
                    undo.close()
            except Exception as exc:  # re-raised below, once the node has stopped
                errors.append(exc)
            finally:
                undo.close()  # again, for a failure before the body ran (idempotent)
                if fault_proxy is not None:
                    await fault_proxy.stop()

        code = await node.run(until=work())
        if errors:
            raise errors[0]
        if not result:
            if code == EXIT_ROOT_GAVE_UP:
                raise GaveUp(
                    "the node's root supervisor gave up (its restart intensity was exceeded) "
                    "before the run ended"
                )
            raise StartError(f"the run was interrupted: the node stopped (exit {code}) first")
        return result[0]
