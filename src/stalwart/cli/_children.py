"""``stalwart children list|terminate|restart|delete``: child control of a running node.

Talks to the node's HTTP API (``/v1/supervisors``, see ``server/_children_api.py``):
``--url`` (default ``$STALWART_URL`` or ``http://127.0.0.1:8470``) and ``--token``
(default ``$STALWART_API_TOKEN``; the mutations need it). Exit codes: 0 done, 1 the
node refused (the reason is printed), 2 the node could not be reached or the
arguments are wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

__all__ = ["add_children_commands", "children_command"]

_TIMEOUT = httpx.Timeout(10.0, read=3700.0)  # a terminate waits up to the child's shutdown


def add_children_commands(sub: Any) -> None:
    parser = sub.add_parser(
        "children", help="list, terminate, restart or delete a supervisor's children on a node"
    )
    parser.add_argument("--url", help="the node's API (default $STALWART_URL or :8470)")
    parser.add_argument("--token", help="the API token (default $STALWART_API_TOKEN)")
    actions = parser.add_subparsers(dest="children_command", required=True)
    listing = actions.add_parser("list", help="which_children and count_children")
    listing.add_argument("supervisor", nargs="?", help="one supervisor (default: all)")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    for verb, text in (
        ("terminate", "stop a child; it is not restarted (a temporary child's spec goes)"),
        ("restart", "start a child whose spec is kept but does not run"),
        ("delete", "remove the spec of a child that does not run"),
    ):
        action = actions.add_parser(verb, help=text)
        action.add_argument("supervisor", help="the supervisor's name (`children list`)")
        action.add_argument("child", help="the child's id under that supervisor")


def children_command(args: argparse.Namespace) -> int | None:
    """Run ``stalwart children ...``; None for any other command."""
    if args.command != "children":
        return None
    url = (args.url or os.environ.get("STALWART_URL") or "http://127.0.0.1:8470").rstrip("/")
    token = args.token or os.environ.get("STALWART_API_TOKEN")
    if token and token.startswith("secret://"):
        hint = "pass the token itself (--token), not a secret:// reference"
        print(f"stalwart children: {hint}", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=_TIMEOUT) as client:
            return _run(client, args)
    except httpx.HTTPError as exc:
        print(f"stalwart children: cannot reach the node at {url}: {exc}", file=sys.stderr)
        return 2


def _run(client: httpx.Client, args: argparse.Namespace) -> int:
    verb = args.children_command
    if verb == "list":
        path = "/v1/supervisors"
        if args.supervisor:
            path += f"/{args.supervisor}/children"
        response = client.get(path)
    else:
        base = f"/v1/supervisors/{args.supervisor}/children/{args.child}"
        response = client.delete(base) if verb == "delete" else client.post(f"{base}/{verb}")
    body = response.json() if response.content else {}
    if response.status_code >= 400:
        print(f"stalwart children {verb}: {body.get('error', response.text)}", file=sys.stderr)
        return 1
    if verb != "list" or args.json:
        print(json.dumps(body, indent=2))
        return 0
    sups = body.get("supervisors", [body])
    for sup in sups:
        counts = sup["counts"]
        kind = "dynamic " if sup["dynamic"] else ""
        print(
            f"{sup['id']} ({kind}{sup['strategy']}, {sup['intensity']} in {sup['period_s']:g} s, "
            f"{sup['state']}): {counts['active']}/{counts['specs']} running"
        )
        if not sup["children"]:
            print("  (none)")
        for row in sup["children"]:
            pid = row["pid"] if row["pid"] is not None else "-"
            print(
                f"  {row['id']:<32} {row['type']:<10} {row['restart']:<9} "
                f"{row['status']:<10} pid={pid} restarts={row['restarts']}"
            )
    return 0
