"""Running the verifications against a live node and deciding the exit code."""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from stalwart.errors import ConfigError, NotExercised, StalwartError
from stalwart.observe import get_logger
from stalwart.verify import (  # noqa: F401 - importing registers the checks
    _checks_alerts,
    _checks_budget,
    _checks_dashboard,
    _checks_degradation,
    _checks_errors,
    _checks_load,
    _checks_monitoring,
    _checks_process,
    _checks_security,
    _checks_state,
)
from stalwart.verify._model import ITEMS, Item, ItemResult
from stalwart.verify._preflight import (
    NOT_DRIVING,
    SMOKE_TASKS,
    Problem,
    load_for_preflight,
    preflight,
    preflight_warnings,
    workload_problem,
)
from stalwart.verify._registry import CHECKS, SPECS, Outcome, item_kills, item_timeout
from stalwart.verify._report import compare, write_reports
from stalwart.verify._target import Target

__all__ = ["PreflightFailed", "run_verify"]


class PreflightFailed(ConfigError):
    """Preconditions of ``stalwart verify`` are unmet; ``problems`` lists each with its fix."""

    def __init__(self, problems: list[Problem]) -> None:
        lines = [f"  - {p.what}\n    fix: {p.fix}" for p in problems]
        super().__init__(
            f"{len(problems)} precondition(s) of stalwart verify unmet:\n" + "\n".join(lines)
        )
        self.problems = problems


_log = get_logger("stalwart.verify")
ITEM_TIMEOUT = 180.0
"""Seconds one item's verification may take before it is stopped and reported not-run (unless it
registered a longer one: LC-1 … LC-3 scale with their configured durations)."""


LC4_CRITERION = (
    "every result, failure and remediation written (md, html, json); changes against "
    "the --baseline listed"
)


def _baseline_item(
    item: Item, results: list[ItemResult], baseline: dict[str, Any] | None
) -> ItemResult:
    """LC-4: this very report is the record; with a baseline it also lists what changed."""
    documented = all(r.status != "failed" or r.remediation for r in results)
    if baseline is None:
        return ItemResult(
            item.id,
            item.level,
            item.title,
            "partial",
            {
                "report": ["readiness.md", "readiness.html", "readiness.json"],
                "baseline": None,
                "failures_with_remediation": documented,
            },
            "pass --baseline with the previous run's readiness.json so regressions are listed",
            criterion=LC4_CRITERION,
            measured="report written; no baseline to compare with",
        )
    changes = compare(results, baseline)
    return ItemResult(
        item.id,
        item.level,
        item.title,
        "complete" if documented else "failed",
        {
            "report": ["readiness.md", "readiness.html", "readiness.json"],
            "baseline_items": len(baseline.get("items", [])),
            "changes": changes,
            "regressions": [c["id"] for c in changes if c["regression"]],
        },
        criterion=LC4_CRITERION,
        measured=f"{len(changes)} change(s) against the baseline",
    )


Progress = Callable[[str, dict[str, Any]], None]
"""Called with each progress event (``verify_item_started``, ``verify_item_progress``,
``verify_node_restarted``, ``verify_item_done``) and its fields; the CLI prints them."""


def _not_run(item: Item, why: str, fix: str, **evidence: Any) -> ItemResult:
    spec = SPECS.get(item.id)
    return ItemResult(
        item.id,
        item.level,
        item.title,
        "not-run",
        {"why": why, **evidence},
        fix,
        criterion=spec.criterion if spec is not None else "",
        measured="not exercised",
    )


def _measured(evidence: dict[str, Any]) -> str:
    """The evidence's scalar values, briefly: what a check that states no measured value
    of its own shows beside its criterion."""
    shown = [
        f"{k}: {v}"
        for k, v in evidence.items()
        if isinstance(v, int | float | str | bool | type(None)) and k != "traceback"
    ]
    text = "; ".join(shown)
    return text if len(text) <= 300 else text[:297] + "…"


async def _ensure_node(target: Target, item: Item, emit: Callable[..., None]) -> str | None:
    """A node fit for ``item``: healthy, and with room in its restart intensity for the
    item's kills. Returns why it was restarted (None: it was not)."""
    why = target.health()
    kills = item_kills(item.id, target.app)
    if why is None and kills:
        used = target.restarts_in_period()
        if used + kills > target.app.intensity:
            why = (
                f"{used} restarts in the last {target.app.period:g} s + the {kills} kills of "
                f"{item.id} would exceed the app's restart intensity {target.app.intensity}"
            )
    if why is not None:
        emit("verify_node_restarted", item=item.id, why=why)
        try:
            await target.restart()
        except (StalwartError, TimeoutError) as exc:  # a start timed out on a loaded machine
            emit("verify_node_restarted", item=item.id, why=f"once more: {exc}")
            await target.restart()
    return why


async def _run_item(
    target: Target, item: Item, fn: Any
) -> tuple[Outcome | None, ItemResult | None]:
    limit = item_timeout(item.id, ITEM_TIMEOUT)
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            return await fn(target), None
    except NotExercised as exc:
        return None, _not_run(item, str(exc), exc.fix or "see the evidence")
    except TimeoutError as exc:
        why = (
            f"the verification did not finish within {limit:g} s"
            if deadline.expired()
            else f"something the verification waited on did not happen in time ({exc or 'a wait'})"
        )
        return None, _not_run(
            item,
            f"{why}: the item was not judged (a hung app, an overloaded machine or a "
            "verify defect; the traceback shows where it waited)",
            "rerun this item alone (--only); if it hangs again, read the traceback and "
            "the node log (node.log)",
            traceback=traceback.format_exc()[-4000:],
        )
    except Exception as exc:  # verify's own error: never the app's failure
        return None, _not_run(
            item,
            f"stalwart verify itself failed while exercising this item: "
            f"{type(exc).__name__}: {exc}",
            "verify could not complete this item (its own error, or its run's machinery "
            "failed): this is no verdict on your app; the traceback is in the evidence "
            "(report it if it repeats)",
            traceback=traceback.format_exc()[-4000:],
        )


async def _workload_works(target: Target, emit: Callable[..., None]) -> None:
    """The last precondition, on the fresh node before any item: a few workload tasks,
    unfaulted, and at least one must succeed. When none does (on the simulated provider,
    typically an app with no scenario for its model), every item would report the
    workload's failure as the app's: raise :class:`PreflightFailed` instead."""
    inputs = target.workload(SMOKE_TASKS, seed=101)
    records = await target.run_all(inputs, prefix="smoke", timeout=60)
    errors: dict[str, int] = {}
    for r in records:
        if r.status != "succeeded":
            o = r.outcome if isinstance(r.outcome, dict) else {}
            key = f"{o.get('type', r.status)}: {str(o.get('message', ''))[:200]}"
            errors[key] = errors.get(key, 0) + 1
    emit("verify_workload_checked", tasks=len(records), failed=sum(errors.values()))
    if records and errors and sum(errors.values()) == len(records):
        raise PreflightFailed([workload_problem(target.app, errors, len(records))])


async def run_verify(
    app_ref: str,
    out: pathlib.Path,
    *,
    only: Sequence[str] = (),
    baseline: dict[str, Any] | None = None,
    manifest: pathlib.Path | None = None,
    allow_real_side_effects: bool = False,
    progress: Progress | None = None,
    check_preconditions: bool = True,
) -> dict[str, Any]:
    """Verify ``app_ref`` item by item; write the reports into ``out``; return the JSON.

    Raises :class:`PreflightFailed` (before any node starts) when a precondition of
    the chosen items is unmet, listing every one with its fix.
    """
    unknown = sorted(set(only) - {i.id for i in ITEMS})
    if unknown:
        raise ConfigError(f"unknown checklist ids {unknown}; known: PA-1 … LC-4")
    chosen = [i for i in ITEMS if not only or i.id in only]
    app = load_for_preflight(app_ref)
    manifest = manifest or (pathlib.Path(app.verify.manifest) if app.verify.manifest else None)
    if manifest is not None:
        manifest = manifest.resolve()  # the report names the file it read, not a cwd-relative path
    if check_preconditions:
        # (in a thread: it connects to proxied tools' upstreams to see that they listen)
        problems = await asyncio.to_thread(
            preflight, app, chosen, manifest=manifest, allow_real=allow_real_side_effects
        )
        if problems:
            raise PreflightFailed(problems)
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results: list[ItemResult] = []
    interrupted = False

    def emit(event: str, **fields: Any) -> None:
        _log.info(event, **fields)
        if progress is not None:
            progress(event, fields)

    if check_preconditions:
        for warning in preflight_warnings(app, chosen):
            emit("verify_preflight_warning", what=warning.what, fix=warning.fix)

    # the work directory is verify's own: the Target empties it once it holds its lock
    async with Target(
        app_ref,
        out / "work",
        allow_real_side_effects=allow_real_side_effects,
        manifest=manifest,
    ) as target:
        if check_preconditions and {i.id for i in chosen} - NOT_DRIVING:
            await _workload_works(target, emit)
        for n, item in enumerate(chosen, 1):
            if await target.stopped_by_signal():
                interrupted = True
                results += [
                    _not_run(
                        rest,
                        "stalwart verify was stopped (SIGTERM or SIGINT) before this item",
                        "run verify again (--only these items)",
                    )
                    for rest in chosen[n - 1 :]
                ]
                emit("verify_interrupted", before=item.id)
                break
            t0 = time.monotonic()
            if item.id == "LC-4":
                results.append(_baseline_item(item, results, baseline))
                continue
            fn = CHECKS.get(item.id)
            if fn is None:
                results.append(
                    _not_run(
                        item,
                        "no executable verification exists for this item yet",
                        "implement its verification in stalwart.verify",
                    )
                )
                continue
            spec = SPECS[item.id]
            emit("verify_item_started", item=item.id, n=n, of=len(chosen), doing=spec.does)
            restarted: str | None = None
            result: ItemResult
            try:
                restarted = await _ensure_node(target, item, emit)
            except Exception as exc:
                result = _not_run(
                    item,
                    f"no healthy node to run it on: restarting the app failed: {exc}",
                    "see node.log: the app did not start again",
                    traceback=traceback.format_exc()[-4000:],
                )
            else:
                target.item = item.id
                target.on_progress = lambda doing, i=item.id, t=t0: emit(
                    "verify_item_progress",
                    item=i,
                    elapsed_s=round(time.monotonic() - t, 1),
                    doing=doing,
                )
                outcome, not_run = await _run_item(target, item, fn)
                if not_run is not None:
                    result = not_run
                else:
                    assert outcome is not None
                    evidence = dict(outcome.evidence)
                    if restarted is not None:
                        evidence["fresh_node_because"] = restarted
                    result = ItemResult(
                        item.id,
                        item.level,
                        item.title,
                        outcome.status,
                        evidence,
                        outcome.remediation,
                        criterion=spec.criterion,
                        measured=outcome.measured or _measured(evidence),
                    )
            if await target.stopped_by_signal():  # the signal came during the item
                interrupted = True
                result = _not_run(
                    item,
                    "stalwart verify was stopped (SIGTERM or SIGINT) during this item",
                    "run verify again (--only this item)",
                )
            result.seconds = round(time.monotonic() - t0, 3)
            results.append(result)
            emit(
                "verify_item_done",
                item=item.id,
                status=result.status,
                seconds=result.seconds,
                measured=result.measured,
            )
    meta = {
        "app": app_ref,
        "started": started_at,
        "seconds": round(time.monotonic() - started, 1),
        "only": list(only),
        "manifest": str(manifest) if manifest is not None else None,
        "allow_real_side_effects": allow_real_side_effects,
        "node_restarts": target.generation - 1,
        "interrupted": interrupted,
    }
    return write_reports(out, results, meta, baseline)
