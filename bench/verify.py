"""`stalwart verify` on the example apps, whole: how long each takes and what it reports.

Writes ``bench/results/verify.json``: per example app (``apps``):

- ``seconds``: the whole run, preflight to reports written;
- ``statuses``: item id -> status (complete, partial, failed, not-run), ``item_seconds``;
- ``measured``: item id -> what the item measured, beside its criterion;
- ``not_run``: how many items were not run, and ``not_run_reasons``: item id -> why;
- ``critical_not_complete``; ``ready``: every critical item complete;
- ``failed``: the ids of the items that failed;
- ``run``: its UTC date and commit; ``load_average_start`` and ``load_average`` (1, 5,
  15 min) at its start and end.

The apps: the helpdesk (``examples.helpdesk.app:app``), the warehouse (plain Python,
SQLite and HTTP side effects, run on doubles; its supplier service is started here),
the expenses app (TOML), and the three framework adapters' support agents (LangGraph,
Pydantic AI, OpenAI Agents SDK; ``examples/*_support``), and an app this project did not
write (``bank_support``: Pydantic AI's published bank-support example, MIT, in
``tests/fixtures/foreign_apps/``; it has no manifest, so MA-1 is left out). The reports
themselves go to ``--out/<app>`` (default: a temporary directory, removed afterwards unless
given).

Usage: ``python bench/verify.py [--quick] [--out DIR] [--app NAME] [--only IDS]``;
``--quick`` runs a few fast items per app (about a minute in all) to check the bench itself
works; ``--only`` a short profile (its ``mode`` is then ``short`` and ``only`` lists the
items run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._meta import commit  # noqa: E402

os.chdir(ROOT)  # the helpdesk's profile names its manifest relative to the repository

from stalwart.verify import ITEMS, run_verify  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
APPS = {
    "helpdesk": "examples.helpdesk.app:app",
    "warehouse": "examples.warehouse.app:app",
    "expenses": str(ROOT / "examples" / "expenses" / "expenses.toml"),
    # the framework adapters' examples (issue 15): the frameworks' own loops, hosted
    "langgraph": "examples.langgraph_support.app:app",
    "pydantic_ai": "examples.pydantic_ai_support.app:app",
    "openai_agents": "examples.openai_agents_support.app:app",
    # an app this project did not write: Pydantic AI's published bank-support example,
    # hosted through the adapter (tests/fixtures/foreign_apps/bank_support.py)
    "bank_support": "tests.fixtures.foreign_apps.bank_support:app",
}
NO_MANIFEST = {"bank_support"}
"""Apps that ship no orchestrator manifest of their own: MA-1 is left out of their run
(this repository's manifest would say nothing about them)."""
QUICK = ["PA-1", "PA-3", "SM-1", "SM-2", "GD-2"]
LENGTHS = (
    "STALWART_VERIFY_LOAD_S",
    "STALWART_VERIFY_CHAOS_S",
    "STALWART_VERIFY_CHAOS_RATE",
    "STALWART_VERIFY_SOAK_S",
    "STALWART_VERIFY_SOAK_RATE",
)


async def one(
    name: str, ref: str, out: pathlib.Path, quick: bool, only: list[str]
) -> dict[str, Any]:
    started = time.monotonic()
    load_at_start = os.getloadavg()
    run = _run_label()  # what the run starts on (the code it imported)
    manifest: pathlib.Path | None = ROOT / "deploy" / "kubernetes" / "deployment.yaml"
    chosen = QUICK if quick else only
    if name in NO_MANIFEST:
        manifest = None
        chosen = [i.id for i in ITEMS if i.id != "MA-1" and (not chosen or i.id in chosen)]
    report = await run_verify(ref, out, only=chosen, manifest=manifest)
    items = report["items"]
    summary = report["summary"]
    return {
        "app": ref,
        "seconds": round(time.monotonic() - started, 1),
        "items": len(items),
        "statuses": {i["id"]: i["status"] for i in items},
        "item_seconds": {i["id"]: i["seconds"] for i in items},
        "measured": {i["id"]: i["measured"] for i in items},
        "counts": summary["counts"],
        "failed": sorted(i["id"] for i in items if i["status"] == "failed"),
        "not_run": len(summary["not_run"]),
        "not_run_reasons": summary["not_run"],
        "critical_not_complete": summary["critical_not_complete"],
        "ready": summary["ready"],
        "node_restarts": report["meta"]["node_restarts"],
        # the lengths and rates of LC-1 ... LC-3 this run used (unset: verify's defaults)
        "lengths": {k: os.environ[k] for k in LENGTHS if k in os.environ},
        "mode": "quick" if quick else ("short" if only else "full"),
        "only": chosen,  # the items run (empty: every item)
        "load_average_start": load_at_start,
        "load_average": os.getloadavg(),  # at the end of the run
        "run": run,
    }


def _run_label() -> dict[str, str]:
    """When and on what this app's run was made: UTC date and the checked-out commit
    (``+dirty`` when the worktree had uncommitted changes)."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
    }


async def bench(
    out: pathlib.Path, quick: bool, names: list[str], only: list[str]
) -> dict[str, Any]:
    from examples.warehouse.supplier import start

    url, supplier, server = start()
    os.environ["SUPPLIER_URL"] = url
    os.environ["WAREHOUSE_DB"] = str(out / "warehouse.db")
    os.environ["EXPENSES_PAYOUTS"] = str(out / "payouts.csv")
    os.environ["EXPENSES_OUTBOX"] = str(out / "outbox.txt")
    results: dict[str, Any] = {}
    try:
        for name in names:
            results[name] = await one(name, APPS[name], out / name, quick, only)
            print(f"verify {name}: {results[name]['counts']} in {results[name]['seconds']} s")
    finally:
        server.shutdown()
    return {
        "mode": "quick" if quick else ("short" if only else "full"),
        "apps": results,
        # safe by default: the warehouse's real targets saw nothing during verification
        "warehouse_supplier_requests": supplier.received,
        "expenses_payout_file_written": (out / "payouts.csv").exists(),
        "machine": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few fast items per app")
    parser.add_argument("--out", default=None, help="where the reports go (default: temporary)")
    parser.add_argument("--app", action="append", choices=sorted(APPS), help="only these apps")
    parser.add_argument("--results", default=str(HERE / "results" / "verify.json"))
    parser.add_argument(
        "--only", default="", help="comma-separated item ids (a short profile, labelled so)"
    )
    args = parser.parse_args()
    # no logging set up here on purpose: run_verify then sends the node's lines (info and
    # up) to OUT/work/node.log and its log store, which MA-5, EH-4, GD-3 and SE-4 search
    with tempfile.TemporaryDirectory(prefix="stalwart-verify-bench-") as tmp:
        out = pathlib.Path(args.out) if args.out else pathlib.Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        only = [i.strip() for i in args.only.split(",") if i.strip()]
        result = asyncio.run(bench(out, args.quick, args.app or list(APPS), only))
    path = pathlib.Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.app and path.exists():  # a run of some apps keeps the others' last results
        kept = json.loads(path.read_text()).get("apps", {})
        result["apps"] = {**kept, **result["apps"]}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    failed = [
        f"{app}:{item}"
        for app, r in result["apps"].items()
        for item, status in r["statuses"].items()
        if status == "failed"
    ]
    raise SystemExit(1 if failed or result["warehouse_supplier_requests"] else 0)


if __name__ == "__main__":
    main()
