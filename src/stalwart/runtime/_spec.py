"""Child and supervisor specifications, with OTP's names and meanings."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from stalwart.errors import ConfigError, InvalidMessage
from stalwart.runtime._messages import check_json

if TYPE_CHECKING:
    from stalwart.runtime._agent import Agent

__all__ = [
    "AnySpec",
    "ChildSpec",
    "DynamicSupervisorSpec",
    "Restart",
    "Shutdown",
    "Strategy",
    "SupervisorSpec",
    "agent_ref",
    "load_agent",
    "iter_specs",
]

Restart: TypeAlias = Literal["permanent", "transient", "temporary"]
Strategy: TypeAlias = Literal["one_for_one", "one_for_all", "rest_for_one"]
Shutdown: TypeAlias = float | Literal["brutal_kill"]

_RESTARTS = ("permanent", "transient", "temporary")
_STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


def agent_ref(agent: type[Agent] | str) -> str:
    """``"module:QualName"`` for an agent class: the form a forked child can import.

    A class defined in the ``__main__`` script becomes ``"@/path/to/script.py:QualName"``;
    the fork server loads that file under another module name, so (as with
    :mod:`multiprocessing`) the script's top-level work must sit under
    ``if __name__ == "__main__":``.
    """
    if isinstance(agent, str):
        if ":" not in agent:
            raise ConfigError(
                f"agent reference {agent!r} must look like 'package.module:ClassName'"
            )
        return agent
    module = agent.__module__
    if module in ("__main__", _MAIN_ALIAS):
        path = getattr(sys.modules.get(module), "__file__", None)
        if not path:
            raise ConfigError(
                f"agent class {agent.__qualname__} is defined in an interactive __main__ (a "
                "notebook cell, `python -c`): agent classes must live in an importable module "
                "or a script file, since each agent process imports its class"
            )
        return f"@{os.path.abspath(path)}:{agent.__qualname__}"
    return f"{module}:{agent.__qualname__}"


_MAIN_ALIAS = "__stalwart_main__"


def _import(module_name: str) -> Any:
    if not module_name.startswith("@"):
        return importlib.import_module(module_name)
    if _MAIN_ALIAS in sys.modules:
        return sys.modules[_MAIN_ALIAS]
    path = module_name[1:]
    spec = importlib.util.spec_from_file_location(_MAIN_ALIAS, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MAIN_ALIAS] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MAIN_ALIAS]
        raise
    return module


def load_agent(ref: str) -> type[Agent]:
    """Import the agent class named by ``ref`` (raises ConfigError naming what is missing)."""
    from stalwart.runtime._agent import Agent

    module_name, _, qualname = ref.rpartition(":")
    try:
        obj: Any = _import(module_name)
    except (ImportError, OSError) as exc:
        raise ConfigError(f"cannot import agent module {module_name!r}: {exc}") from exc
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"module {module_name!r} has no attribute {qualname!r}")
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise ConfigError(f"{ref!r} is not a subclass of stalwart.Agent")
    return obj


def _check_shutdown(owner: str, shutdown: Shutdown) -> None:
    if shutdown == "brutal_kill":
        return
    if (
        not isinstance(shutdown, int | float)
        or isinstance(shutdown, bool)
        or not math.isfinite(shutdown)
        or not 0 < shutdown <= 3600
    ):
        raise ConfigError(
            f"{owner}: shutdown must be 'brutal_kill' or seconds in (0, 3600], got {shutdown!r} "
            "(there is no 'infinity': every stop is bounded)"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one agent process (a *worker*).

    id
        The child's identity in its supervisor and its registered name on the
        node (``call("id", …)`` reaches it). Unique across the node.
    agent
        The :class:`stalwart.Agent` subclass, or ``"module:Class"``.
    args
        JSON-compatible data passed to the agent's ``init``.
    restart
        ``permanent`` (always restarted), ``transient`` (restarted only after an
        abnormal exit: not after ``normal`` -- exit code 0 -- or ``shutdown`` -- it
        raised :class:`stalwart.errors.Shutdown`, or a SIGTERM), ``temporary`` (never
        restarted; its spec is removed when it ends).
    shutdown
        Seconds the child gets to stop after being asked, before SIGKILL; or
        ``"brutal_kill"`` for SIGKILL at once.
    memory_limit_mb
        The process's own resident memory (USS: what it does not share with the fork
        server it was forked from, such as preloaded models) above which it is killed
        (reason ``memory_limit``) and handled as any abnormal exit. ``None``: no limit.
    """

    id: str
    agent: type[Agent] | str
    args: Any = None
    restart: Restart = "permanent"
    shutdown: Shutdown = 5.0
    memory_limit_mb: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or len(self.id) > 200:
            raise ConfigError(f"ChildSpec.id must be a non-empty str, got {self.id!r}")
        if self.restart not in _RESTARTS:
            raise ConfigError(
                f"ChildSpec {self.id!r}: restart must be one of {_RESTARTS}, got {self.restart!r}"
            )
        _check_shutdown(f"ChildSpec {self.id!r}", self.shutdown)
        if self.memory_limit_mb is not None and not (
            isinstance(self.memory_limit_mb, int | float) and self.memory_limit_mb > 0
        ):
            raise ConfigError(
                f"ChildSpec {self.id!r}: memory_limit_mb must be > 0 or None, "
                f"got {self.memory_limit_mb!r}"
            )
        try:
            check_json(self.args, what=f"ChildSpec {self.id!r} args")
        except InvalidMessage as exc:
            raise ConfigError(str(exc)) from None
        agent_ref(self.agent)  # validates the reference form early

    @property
    def ref(self) -> str:
        return agent_ref(self.agent)


@dataclasses.dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """A supervisor: its children, its strategy and its restart intensity.

    A ``SupervisorSpec`` may itself be a child of another supervisor (nested
    trees). ``restart`` and ``shutdown`` then say how its parent treats it;
    ``shutdown`` bounds the time to stop its whole subtree before its
    remaining processes are killed.
    """

    id: str
    children: Sequence[AnySpec]
    strategy: Strategy = "one_for_one"
    intensity: int = 5
    period: float = 60.0
    restart: Restart = "permanent"
    shutdown: Shutdown = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(f"SupervisorSpec.id must be a non-empty str, got {self.id!r}")
        if self.strategy not in _STRATEGIES:
            raise ConfigError(
                f"SupervisorSpec {self.id!r}: strategy must be one of {_STRATEGIES}, "
                f"got {self.strategy!r}"
            )
        if self.restart not in _RESTARTS:
            raise ConfigError(
                f"SupervisorSpec {self.id!r}: restart must be one of {_RESTARTS}, "
                f"got {self.restart!r}"
            )
        if not isinstance(self.intensity, int) or isinstance(self.intensity, bool):
            raise ConfigError(f"SupervisorSpec {self.id!r}: intensity must be an int")
        if self.intensity < 0:
            raise ConfigError(f"SupervisorSpec {self.id!r}: intensity must be >= 0")
        if not (isinstance(self.period, int | float) and 0 < self.period <= 86_400):
            raise ConfigError(f"SupervisorSpec {self.id!r}: period must be in (0, 86400] s")
        _check_shutdown(f"SupervisorSpec {self.id!r}", self.shutdown)
        object.__setattr__(self, "children", tuple(self.children))
        seen: set[str] = set()
        for child in self.children:
            if not isinstance(child, ChildSpec | SupervisorSpec | DynamicSupervisorSpec):
                raise ConfigError(
                    f"SupervisorSpec {self.id!r}: children must be ChildSpec, SupervisorSpec "
                    f"or DynamicSupervisorSpec, got {type(child).__name__}"
                )
            if child.id in seen:
                raise ConfigError(f"SupervisorSpec {self.id!r}: duplicate child id {child.id!r}")
            seen.add(child.id)


_KEY_FORBIDDEN = frozenset("/?#% \t\n\r")


@dataclasses.dataclass(frozen=True, slots=True)
class DynamicSupervisorSpec:
    """A supervisor of many instances of one :class:`ChildSpec`, each keyed by an id.

    OTP's ``simple_one_for_one`` (Elixir's ``DynamicSupervisor``): it starts with
    no children; ``start_instance(key)`` starts one more process from ``child``
    (its registered name is ``"<child.id>:<key>"``, its ``args`` the template's
    unless given). Each instance is restarted on its own (``one_for_one``) per the
    template's ``restart`` type, within this supervisor's ``intensity``/``period``.

    max_children
        Most instances running at once; one more start raises
        :class:`ChildError` ``max_children``. ``None``: no limit.
    idle_timeout
        Seconds without a message through the supervisor's ``call``/``cast`` after
        which an instance is stopped (reason ``shutdown``, normal). Its key is
        kept: the next message through the supervisor starts it again (*resume*;
        its state is what its ``init`` reloads, e.g. from the journal). ``None``:
        never stopped for idleness.
    """

    id: str
    child: ChildSpec
    max_children: int | None = None
    idle_timeout: float | None = None
    intensity: int = 5
    period: float = 60.0
    restart: Restart = "permanent"
    shutdown: Shutdown = 30.0

    strategy: Strategy = dataclasses.field(default="one_for_one", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(f"DynamicSupervisorSpec.id must be a non-empty str, got {self.id!r}")
        where = f"DynamicSupervisorSpec {self.id!r}"
        if not isinstance(self.child, ChildSpec):
            raise ConfigError(f"{where}: child must be a ChildSpec (the template of instances)")
        if self.max_children is not None and (
            not isinstance(self.max_children, int)
            or isinstance(self.max_children, bool)
            or self.max_children < 1
        ):
            raise ConfigError(f"{where}: max_children must be an int >= 1 or None")
        if self.idle_timeout is not None and not (
            isinstance(self.idle_timeout, int | float)
            and math.isfinite(self.idle_timeout)
            and self.idle_timeout > 0
        ):
            raise ConfigError(f"{where}: idle_timeout must be seconds > 0 or None")
        if self.restart not in _RESTARTS:
            raise ConfigError(f"{where}: restart must be one of {_RESTARTS}, got {self.restart!r}")
        if not isinstance(self.intensity, int) or isinstance(self.intensity, bool):
            raise ConfigError(f"{where}: intensity must be an int")
        if self.intensity < 0:
            raise ConfigError(f"{where}: intensity must be >= 0")
        if not (isinstance(self.period, int | float) and 0 < self.period <= 86_400):
            raise ConfigError(f"{where}: period must be in (0, 86400] s")
        _check_shutdown(where, self.shutdown)

    @property
    def children(self) -> tuple[ChildSpec, ...]:
        return ()

    def instance_id(self, key: str) -> str:
        """The registered name of the instance for ``key`` (ConfigError if ``key`` is bad)."""
        if (
            not isinstance(key, str)
            or not key
            or len(key) > 150
            or any(c in _KEY_FORBIDDEN for c in key)
        ):
            raise ConfigError(
                f"instance key must be a non-empty str of at most 150 characters without "
                f"'/', '?', '#', '%' or whitespace, got {key!r}"
            )
        return f"{self.child.id}:{key}"

    def instance(self, key: str, args: Any = None) -> ChildSpec:
        """The ChildSpec of ``key``'s instance: the template, renamed, with ``args`` if given."""
        name = self.instance_id(key)
        return dataclasses.replace(
            self.child, id=name, args=self.child.args if args is None else args
        )


AnySpec: TypeAlias = "ChildSpec | SupervisorSpec | DynamicSupervisorSpec"


def iter_specs(spec: SupervisorSpec | DynamicSupervisorSpec) -> list[AnySpec]:
    """Every spec in the tree under ``spec`` (itself included), depth first."""
    out: list[AnySpec] = [spec]
    for child in spec.children:
        out.extend(iter_specs(child) if isinstance(child, SupervisorSpec) else [child])
    return out
