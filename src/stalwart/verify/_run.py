"""Running the verifications against a live node and deciding the exit code."""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import time
from collections.abc import Sequence
from typing import Any

from stalwart.errors import ConfigError
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
from stalwart.verify._model import ITEMS, ItemResult
from stalwart.verify._registry import CHECKS, item_timeout
from stalwart.verify._report import compare, write_reports
from stalwart.verify._target import Target

__all__ = ["run_verify"]

_log = get_logger("stalwart.verify")
ITEM_TIMEOUT = 180.0
"""Seconds one item's verification may take before it counts as failed (unless it
registered a longer one: LC-1 … LC-3 scale with their configured durations)."""


def _baseline_item(
    item: Any, results: list[ItemResult], baseline: dict[str, Any] | None
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
    )


async def run_verify(
    app_ref: str,
    out: pathlib.Path,
    *,
    only: Sequence[str] = (),
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Verify ``app_ref`` item by item; write the reports into ``out``; return the JSON."""
    unknown = sorted(set(only) - {i.id for i in ITEMS})
    if unknown:
        raise ConfigError(f"unknown checklist ids {unknown}; known: PA-1 … LC-4")
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    results: list[ItemResult] = []
    chosen = [i for i in ITEMS if not only or i.id in only]
    # the work directory is verify's own: the Target empties it once it holds its lock
    async with Target(app_ref, out / "work") as target:
        for item in chosen:
            t0 = time.monotonic()
            if item.id == "LC-4":
                results.append(_baseline_item(item, results, baseline))
                continue
            fn = CHECKS.get(item.id)
            if fn is None:
                results.append(
                    ItemResult(
                        item.id,
                        item.level,
                        item.title,
                        "partial",
                        {
                            "verified": False,
                            "why": "no executable verification exists for this item "
                            "yet; it is not demonstrated by this report",
                        },
                        "implement its verification in stalwart.verify",
                        0.0,
                    )
                )
                continue
            _log.info("verify_item_started", item=item.id)
            try:
                async with asyncio.timeout(item_timeout(item.id, ITEM_TIMEOUT)):
                    outcome = await fn(target)
                status, evidence, remedy = outcome.status, outcome.evidence, outcome.remediation
            except Exception as exc:  # a verification that breaks is a failed item, not a crash
                status, evidence = "failed", {"error": f"{type(exc).__name__}: {exc}"}
                remedy = "the verification itself failed; see the error"
            results.append(
                ItemResult(
                    item.id,
                    item.level,
                    item.title,
                    status,
                    evidence,
                    remedy,
                    round(time.monotonic() - t0, 3),
                )
            )
            _log.info("verify_item_done", item=item.id, status=status)
    meta = {
        "app": app_ref,
        "started": started_at,
        "seconds": round(time.monotonic() - started, 1),
        "only": list(only),
    }
    return write_reports(out, results, meta, baseline)
