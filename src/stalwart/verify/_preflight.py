"""Preflight: what an app must declare before ``stalwart verify`` runs any item, and
``--plan``: what would run, on which doubles, and for about how long.

Preflight loads the app (no node is started) and lists every missing piece with its
fix; ``stalwart verify`` exits 2 with the whole list, in seconds, instead of reporting
each missing piece as failed items after minutes of running.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

from stalwart.agent import App
from stalwart.config import load_ref
from stalwart.errors import ConfigError
from stalwart.verify._checks_load import chaos_restarts, intensity_fix
from stalwart.verify._model import Item
from stalwart.verify._registry import SPECS, item_kills
from stalwart.verify._target import blocked_tools, side_effect_tools, tool_modes
from stalwart.verify._tool_proxy import proxy_decls, upstream_listening

__all__ = ["NOT_DRIVING", "Problem", "plan", "preflight", "preflight_warnings", "workload_problem"]


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One missing precondition and how to add it."""

    what: str
    fix: str


MODEL_ITEMS = frozenset({"EH-1", "EH-2", "EH-3", "EH-4", "SM-3", "GD-1", "GD-3", "SE-4"})
"""The items that fault the app's models through the simulated provider."""

PROXY_ITEMS = frozenset({"EH-1", "EH-2", "EH-3", "GD-2", "GD-3", "SM-4"})
"""The items that fault proxied tools' upstreams at their fault proxies (EH-1 … EH-3
and GD-3 also run on an app with no model when a tool is proxied)."""


DOUBLE_ITEMS = frozenset({"EH-1", "EH-2", "EH-3", "GD-3"})
"""The items that also fault the tools that run their doubles, at the double's switch
(each attempt reset or held unanswered); they too run on an app with no model."""


NOT_DRIVING = frozenset({"PA-2", "PA-3", "SM-3", "LC-4", "MA-1", "SE-1"})
"""The items that run no workload task (every other item drives the app's workload)."""


def _spenders(app: App) -> list[Any]:
    return [a for a in app.agents if a.model]


def _workload_broken(ref: str) -> Problem | None:
    """The workload ``ref`` resolved and called as verify calls it: ``fn(2, seed=1)`` must
    return 2 task inputs. None when it does."""
    fix = (
        f"point workload at a function of (count, seed) returning count task inputs for "
        f"the entry agent (now {ref!r}; docs/verify.md, The verification profile)"
    )
    try:
        generate = load_ref(ref, "workload")
        inputs = list(generate(2, seed=1))
    except Exception as exc:  # the user's function: any error it raises is the problem
        return Problem(f"the workload {ref!r} cannot be used: {type(exc).__name__}: {exc}", fix)
    if len(inputs) != 2:
        return Problem(
            f"the workload {ref!r} returned {len(inputs)} task input(s) when asked for 2", fix
        )
    return None


def preflight(
    app: App, items: Sequence[Item], *, manifest: pathlib.Path | None, allow_real: bool
) -> list[Problem]:
    """Every precondition of verifying ``items`` on ``app`` that is not met."""
    problems: list[Problem] = []
    ids = {i.id for i in items}
    driving = ids - NOT_DRIVING
    if driving and not app.workload:
        problems.append(
            Problem(
                "the app declares no workload: no item can drive tasks through it",
                "set App(workload='module:function') or [verify] workload = '...': a "
                "function of (count, seed) returning task inputs for the entry agent",
            )
        )
    elif driving and app.workload:
        problem = _workload_broken(app.workload)
        if problem is not None:
            problems.append(problem)
    # the load items drive thousands of model calls: not without a limit on each agent
    # (SE-4 itself judges the limits, and reports a missing one as failed)
    unlimited = [a.name for a in _spenders(app) if not a.security.budget.limited]
    if unlimited and ids & {"LC-1", "LC-2", "LC-3"}:
        problems.append(
            Problem(
                f"agent(s) {', '.join(unlimited)} call a model with no spend limit",
                "give each a budget: security=Security(budget=Budget(task_usd=..., "
                "agent_usd=..., day_usd=...)) (docs/security.md, Budgets)",
            )
        )
    kills = max((item_kills(i, app) for i in ids), default=0)
    if kills and app.intensity < kills:
        problems.append(
            Problem(
                f"restart intensity {app.intensity} in {app.period:g} s cannot absorb the "
                f"{kills} SIGKILLs one item makes (verify gives each killing item a fresh "
                "node, but not a fresh intensity within one item)",
                f"raise App.intensity (TOML: [supervision] intensity) to at least {kills}",
            )
        )
    if "MA-1" in ids and manifest is None:
        problems.append(
            Problem(
                "MA-1 checks that the orchestrator manifest wires /livez and /readyz, and no "
                "manifest is given",
                "pass --manifest path/to/deployment.yaml (or [verify] manifest = '...')",
            )
        )
    elif "MA-1" in ids and manifest is not None and not manifest.is_file():
        problems.append(
            Problem(f"the manifest {str(manifest)!r} does not exist", "pass an existing file")
        )
    modes = tool_modes(app)
    for name, (mode, _) in sorted(modes.items()):
        tool = next(t for a in app.agents for t in a.tools if t.name == name)
        if mode == "double" and tool.double is None:
            problems.append(
                Problem(
                    f"the profile says tool {name!r} runs its double, and it has none",
                    f"give it one: @tool(..., double=fn) with {name}'s parameters",
                )
            )
    for decl in proxy_decls(app).values():
        if decl.problem:
            problems.append(Problem(decl.problem, decl.fix))
        elif driving and not upstream_listening(decl):  # a blocking connect: <= 1 s
            problems.append(
                Problem(
                    f"tool {decl.tool!r}: nothing accepts connections at its proxy upstream "
                    f"{decl.upstream!r} (from {decl.where})",
                    "start the service before verify (the proxy forwards to it), or point "
                    f"the profile at where it listens: 'proxy:{decl.var}=<url>'",
                )
            )
    undeclared = [n for n in side_effect_tools(app) if n not in app.verify.tools]
    for name in blocked_tools(app):
        if name in undeclared and not allow_real:
            problems.append(
                Problem(
                    f"side-effect tool {name!r} has no double and no simulated target: "
                    "verify would either skip it or reach its real target",
                    f"give it @tool(..., double=fn), or declare it in the profile: tools = "
                    f"{{{name!r}: 'sim:<service>'}}, or {{{name!r}: 'proxy:<VAR>=<loopback "
                    f"url>'}} (a test service on this machine, faulted through a proxy), or "
                    f"{{{name!r}: 'none'}} to accept the items that need it as not-run, or "
                    "pass --allow-real-side-effects",
                )
            )
    return problems


def _chaos_overrun(app: App) -> str | None:
    """Why LC-2 will be ``not-run`` on ``app`` should its node give up (its chaos plan
    forces more restarts in one intensity window than the app allows), else None. LC-2
    runs on a node of its own, so this never reaches another item: a warning, not an
    unmet precondition."""
    tools = [name for name, decl in proxy_decls(app).items() if not decl.problem]
    load = chaos_restarts(app, tools)
    return intensity_fix(load, app) if load.exceeds(app.intensity) else None


def preflight_warnings(app: App, items: Sequence[Item]) -> list[Problem]:
    """What will keep an item from judging the app, short of an unmet precondition."""
    out: list[Problem] = []
    if "LC-2" in {i.id for i in items} and app.workload:
        fix = _chaos_overrun(app)
        if fix is not None:
            out.append(
                Problem(
                    f"LC-2's chaos plan may make its node's root supervisor give up on "
                    f"verify's kill rate alone (restart intensity {app.intensity} in "
                    f"{app.period:g} s): LC-2 then reports not-run, not failed; its kills "
                    "stay on LC-2's own node",
                    fix,
                )
            )
    return out


def plan(app: App, app_ref: str, items: Sequence[Item], *, allow_real: bool) -> dict[str, Any]:
    """What ``stalwart verify`` would do: per item, what it does and its criterion, on
    which doubles and simulated services, and the expected duration."""
    modes = tool_modes(app)
    blocked = [] if allow_real else blocked_tools(app)
    proxies = proxy_decls(app)
    doubles = sorted(n for n, (mode, _) in tool_modes(app).items() if mode == "double")
    effects = set(side_effect_tools(app))
    rows = []
    total = 0.0
    for item in items:
        spec = SPECS.get(item.id)
        estimate = spec.estimate_s if spec is not None else 0.0
        total += estimate
        expect = ""
        if item.id in MODEL_ITEMS and not (app.models and app.sim):
            expect = "not-run: the app calls no model on the simulated provider"
            if (item.id in PROXY_ITEMS and proxies) or (item.id in DOUBLE_ITEMS and doubles):
                expect = ""  # it faults the proxied tools' upstreams, or the doubles
        verb = {
            "EH-1": "resets (attempts and waits counted)",
            "EH-2": "resets until the breaker opens",
            "EH-3": "black hole",
            "GD-2": "resets",
            "GD-3": "resets held until the degradation alert",
            "SM-4": "latency",
        }.get(item.id, "")
        if item.id in DOUBLE_ITEMS and doubles:
            via = f"{verb} at the double of {', '.join(doubles)}"
            expect = f"{expect}; {via}" if expect else via
        if item.id in PROXY_ITEMS and proxies:
            via = f"{verb} at the fault proxy of {', '.join(sorted(proxies))}"
            expect = f"{expect}; {via}" if expect else via
        if item.id == "LC-2" and app.workload:
            overrun = _chaos_overrun(app)
            if overrun is not None:
                expect = f"not-run if its node gives up: {overrun}"
        rows.append(
            {
                "id": item.id,
                "expect": expect,
                "does": spec.does if spec is not None else "writes the report",
                "criterion": spec.criterion if spec is not None else "",
                "kills": item_kills(item.id, app),
                "estimate_s": estimate,
            }
        )
    if not app.models and not app.sim:
        models = "no model chains"
    else:
        models = "the simulated provider stands in for every model"
    return {
        "app": app_ref,
        "models": models,
        "tools": {
            name: _tool_row(
                name, mode, arg, blocked=name in blocked, effect=name in effects, proxies=proxies
            )
            for name, (mode, arg) in sorted(modes.items())
        },
        "items": rows,
        "expected_s": round(total),
        "warnings": [dataclasses.asdict(w) for w in preflight_warnings(app, items)],
    }


def _tool_row(
    name: str, mode: str, arg: str, *, blocked: bool, effect: bool, proxies: dict[str, Any]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "fault_mode": mode + (f":{arg}" if arg else ""),
        "real_side_effects": "blocked" if blocked else "n/a or allowed",
    }
    decl = proxies.get(name)
    if decl is not None:
        upstream = decl.upstream or "?"
        row["proxy"] = (
            f"a fault proxy on a free loopback port in front of {upstream} (from "
            f"{decl.where}); ${decl.var} points the tool at it"
            + (f" -- unusable: {decl.problem}" if decl.problem else "")
        )
        if effect:
            row["real_side_effects"] = f"reaches its real target {upstream} through the proxy"
    return row


def load_for_preflight(app_ref: str) -> App:
    from stalwart.agent import load_app

    try:
        return load_app(app_ref)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot load the app {app_ref!r}: {type(exc).__name__}: {exc}") from exc


SMOKE_TASKS = 3
"""Workload tasks verify runs, unfaulted, on its fresh node before any item."""


def workload_problem(app: App, errors: dict[str, int], count: int) -> Problem:
    """Every one of ``count`` unfaulted workload tasks failed (``errors``: each error and
    how many had it): no item could tell the app's mechanisms from this."""
    seen = "; ".join(f"{n} x {e}" for e, n in errors.items())
    if app.models and app.sim:
        fix = (
            "the simulated provider stands in for your models and answers by the app's "
            "scenario rules (App(scenario=Scenario((Rule(match=..., call=... or "
            "answer=...), ...))), docs/models.md); where no rule matches it answers plain "
            "text and calls no tool, which an agent that needs a tool call or a structured "
            "output (a Pydantic AI output_type, an output schema) cannot use: add rules "
            "that play your model on the workload's inputs (docs/verify.md, Models)"
        )
    else:
        fix = (
            "make the workload's tasks succeed on an unfaulted node (run one with "
            "`stalwart run` and `stalwart submit` to see why it fails)"
        )
    return Problem(
        f"all {count} workload tasks failed with no fault injected ({seen}): no item could "
        "tell your app's mechanisms from its failing tasks",
        fix,
    )
