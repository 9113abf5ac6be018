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
        default="examples.helpdesk.app:app",
        help="the App to verify (module:attribute or .toml)",
    )
    verify.add_argument("--out", default="readiness", help="report directory (readiness/)")
    verify.add_argument("--baseline", help="a previous readiness.json to compare with")
    verify.add_argument("--only", help="comma-separated ids, e.g. PA-1,SM-2")


def verify_command(args: argparse.Namespace) -> int:
    """Exit 0 when no critical item failed, 1 when one did, 2 on bad arguments."""
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
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # the node's log lines go to a file beside the report (and into its log store, which
    # MA-5 searches); the terminal shows the verdicts
    with open(out / "node.log", "a") as log_file:
        configure_logging(stream=log_file)
        try:
            document = asyncio.run(run_verify(args.app, out, only=only, baseline=baseline))
        except StalwartError as exc:
            print(f"stalwart verify: {exc}", file=sys.stderr)
            return 2
    summary = document["summary"]
    for item in document["items"]:
        print(f"{item['id']:5} {item['level']:11} {item['status']:15} {item['title']}")
    print(f"\n{summary['counts']}; report: {out / 'readiness.md'} (and .html, .json)")
    return 1 if summary["critical_failed"] else 0
