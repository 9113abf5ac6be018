"""Where verifications register: one async function per checklist item."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

from stalwart.verify._model import Status
from stalwart.verify._target import Target

__all__ = [
    "CHECKS",
    "SPECS",
    "CheckSpec",
    "Outcome",
    "check",
    "item_kills",
    "item_timeout",
    "pct",
]


@dataclasses.dataclass(slots=True)
class Outcome:
    """A check's verdict: its status, the evidence, what to do, and what it measured
    (``measured``, in the terms of the check's criterion: the report prints it beside
    the criterion)."""

    status: Status
    evidence: dict[str, Any]
    remediation: str | None = None
    measured: str = ""


Check = Callable[[Target], Awaitable[Outcome]]


@dataclasses.dataclass(frozen=True, slots=True)
class CheckSpec:
    """What a check declares about itself: its pass criterion, what it does (for
    ``--plan`` and the progress lines), how many agent processes it SIGKILLs on the
    node under test (verify gives it a fresh node when the app's restart intensity
    could not absorb them), and roughly how long it takes."""

    criterion: str
    does: str
    kills: int = 0
    estimate_s: float = 10.0
    kills_per_model_agent: int = 0
    """SIGKILLs of each agent that calls a model (EH-1, EH-2, EH-4 restart those agents
    so that each fault meets closed breakers), on top of ``kills``."""
    kills_need_side_effects: bool = False
    """``kills`` land only on agents holding side-effect tools (SM-4): none on an app
    without one (so no fresh node is started for kills that will not happen)."""


CHECKS: dict[str, Check] = {}
SPECS: dict[str, CheckSpec] = {}
TIMEOUTS: dict[str, Callable[[], float]] = {}


def check(
    item_id: str,
    *,
    criterion: str,
    does: str,
    kills: int = 0,
    estimate_s: float = 10.0,
    timeout: Callable[[], float] | None = None,
    kills_per_model_agent: int = 0,
    kills_need_side_effects: bool = False,
) -> Callable[[Check], Check]:
    """Register the verification of ``item_id`` (one per item), with its pass
    ``criterion`` and what it ``does``. ``timeout`` gives the seconds it may take,
    when that depends on its settings (a soak's length)."""

    def register(fn: Check) -> Check:
        if item_id in CHECKS:
            raise ValueError(f"{item_id} already has a verification")
        CHECKS[item_id] = fn
        SPECS[item_id] = CheckSpec(
            criterion, does, kills, estimate_s, kills_per_model_agent, kills_need_side_effects
        )
        if timeout is not None:
            TIMEOUTS[item_id] = timeout
        return fn

    return register


def item_kills(item_id: str, app: Any) -> int:
    """The SIGKILLs ``item_id``'s verification makes on the node under test of ``app``
    (what the app's restart intensity must absorb within the item)."""
    spec = SPECS.get(item_id)
    if spec is None:
        return 0
    model_agents = sum(1 for a in app.agents if a.model)
    kills = spec.kills
    if spec.kills_need_side_effects and not any(t.side_effect for a in app.agents for t in a.tools):
        kills = 0
    return kills + spec.kills_per_model_agent * model_agents


def item_timeout(item_id: str, default: float) -> float:
    """The seconds ``item_id``'s verification may take (``default`` unless it says)."""
    given = TIMEOUTS.get(item_id)
    return max(default, given()) if given is not None else default


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def next_event(bus: Any, name: str, *, timeout: float, **fields: Any) -> Any:
    """Wait (bounded) for the next event ``name`` with ``fields`` on ``bus``."""
    import asyncio

    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_event(event: Any) -> None:
        if (
            event.name == name
            and not fut.done()
            and all(event.fields.get(k) == v for k, v in fields.items())
        ):
            fut.set_result(event)

    with bus.subscribe(on_event):
        async with asyncio.timeout(timeout):
            return await fut
