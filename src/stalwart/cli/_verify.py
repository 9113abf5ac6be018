"""``stalwart verify``: run the checklist against a live node and write the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
from typing import Any

from stalwart.errors import StalwartError
from stalwart.observe import configure_logging

__all__ = ["add_verify_command", "verify_command"]


def add_verify_command(sub: Any) -> None:
    verify = sub.add_parser("verify", help="verify production readiness item by item")
    verify.add_argument(
        "app",
        nargs="?",
        default="stalwart.demo.app:app",
        help="the App to verify (module:attribute or .toml)",
    )
    verify.add_argument("--out", default="readiness", help="report directory (readiness/)")
    verify.add_argument("--baseline", help="a previous readiness.json to compare with")
    verify.add_argument("--only", help="comma-separated ids, e.g. PA-1,SM-2")
    verify.add_argument(
        "--manifest", help="the orchestrator manifest MA-1 reads for the probes (a YAML file)"
    )
    verify.add_argument(
        "--plan",
        action="store_true",
        help="print what would run, on which doubles, and the expected duration; run nothing",
    )
    verify.add_argument(
        "--allow-real-side-effects",
        action="store_true",
        help="let side-effect tools with no double reach their real targets",
    )


def _progress(event: str, fields: dict[str, Any]) -> None:
    """One line per progress event on stderr (the same events go to the log)."""
    item = fields.get("item", "")
    if event == "verify_item_started":
        line = f"[{fields['n']}/{fields['of']}] {item}: {fields['doing']}"
    elif event == "verify_item_progress":
        line = f"      {item} +{fields['elapsed_s']:.0f}s: {fields['doing']}"
    elif event == "verify_node_restarted":
        line = f"      {item}: a fresh node first ({fields['why']})"
    elif event == "verify_preflight_warning":
        line = f"warning: {fields['what']}\n    fix: {fields['fix']}"
    elif event == "verify_workload_checked":
        line = f"workload: {fields['tasks']} unfaulted task(s), {fields['failed']} failed"
    elif event == "verify_item_done":
        measured = f" ({fields['measured']})" if fields.get("measured") else ""
        line = f"      {item}: {fields['status']} in {fields['seconds']:.1f}s{measured}"
    else:
        return
    print(line, file=sys.stderr, flush=True)


def _print_plan(document: dict[str, Any]) -> None:
    print(f"stalwart verify --plan for {document['app']}")
    print(f"models: {document['models']}")
    for name, tool in document["tools"].items():
        print(f"tool {name}: {tool['fault_mode']} (real side effects: {tool['real_side_effects']})")
        if tool.get("proxy"):
            print(f"      proxy: {tool['proxy']}")
    for row in document["items"]:
        kills = f", {row['kills']} SIGKILLs" if row["kills"] else ""
        print(f"{row['id']:5} ~{row['estimate_s']:>4.0f}s{kills}: {row['does']}")
        if row["criterion"]:
            print(f"      complete when: {row['criterion']}")
        if row["expect"]:
            print(f"      expected {row['expect']}")
    print(f"expected duration: about {document['expected_s']} s")
    for warning in document["warnings"]:
        print(f"warning: {warning['what']}\n    fix: {warning['fix']}")


def verify_command(args: argparse.Namespace) -> int:
    """Exit 0 when no critical item failed, 1 when one did, 2 on bad arguments or an
    unmet precondition (preflight, before any node starts), 130 when stopped by SIGTERM
    or SIGINT (the report lists the items not run)."""
    from stalwart.cli._tasks import ensure_cwd_importable
    from stalwart.verify import run_verify

    ensure_cwd_importable()
    try:
        baseline = json.loads(pathlib.Path(args.baseline).read_text()) if args.baseline else None
    except (OSError, json.JSONDecodeError) as exc:
        print(
            f"stalwart verify: cannot read the baseline {args.baseline!r}: {exc}", file=sys.stderr
        )
        return 2
    only = [i.strip() for i in args.only.split(",") if i.strip()] if args.only else []
    manifest = pathlib.Path(args.manifest) if args.manifest else None
    if args.plan:
        from stalwart.verify import ITEMS
        from stalwart.verify._preflight import load_for_preflight, plan, preflight

        try:
            app = load_for_preflight(args.app)
        except StalwartError as exc:
            print(f"stalwart verify: {exc}", file=sys.stderr)
            return 2
        items = [i for i in ITEMS if not only or i.id in only]
        if manifest is None and app.verify.manifest:  # as the run itself reads it
            manifest = pathlib.Path(app.verify.manifest)
        _print_plan(plan(app, args.app, items, allow_real=args.allow_real_side_effects))
        problems = preflight(app, items, manifest=manifest, allow_real=args.allow_real_side_effects)
        for problem in problems:
            print(f"precondition unmet: {problem.what}\n    fix: {problem.fix}")
        return 2 if problems else 0
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # the node's log lines go to a file beside the report (and into its log store, which
    # MA-5 searches); the terminal shows the verdicts
    with open(out / "node.log", "a") as log_file:
        configure_logging(stream=log_file)
        try:
            document = asyncio.run(
                run_verify(
                    args.app,
                    out,
                    only=only,
                    baseline=baseline,
                    manifest=manifest,
                    allow_real_side_effects=args.allow_real_side_effects,
                    progress=_progress,
                )
            )
        except StalwartError as exc:
            print(f"stalwart verify: {exc}", file=sys.stderr)
            return 2
    summary = document["summary"]
    for item in document["items"]:
        print(f"{item['id']:5} {item['level']:11} {item['status']:9} {item['title']}")
        if item["status"] != "complete" and item.get("remediation"):
            print(f"{'':27}{item['remediation']}")
    print(f"\n{summary['counts']}; report: {out / 'readiness.md'} (and .html, .json)")
    if document["meta"].get("interrupted"):
        print("stalwart verify was stopped by a signal: the items not run say so", file=sys.stderr)
        return 130
    return 1 if summary["critical_failed"] else 0
