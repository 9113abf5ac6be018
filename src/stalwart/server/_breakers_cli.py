"""``stalwart breaker list|show|force-open|disable|metrics-only|close`` against a running node.

Talks to the node's HTTP API (``/v1/breakers``, see
:mod:`stalwart.server._breakers_api`): ``--url`` (default ``$STALWART_URL``,
else ``http://127.0.0.1:8470``) and ``--token`` (default
``$STALWART_API_TOKEN``; a ``secret://`` reference is resolved by the
configured secrets provider). Exit codes: 0 done, 1 the node refused (the
answer's error is printed), 2 the node could not be reached or the arguments
are wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

from stalwart.errors import StalwartError

__all__ = ["add_breaker_commands", "breaker_command"]

_ORDERS = {
    "force-open": "forced_open",
    "disable": "disabled",
    "metrics-only": "metrics_only",
    "close": "closed",
}
_TIMEOUT = 10.0  # seconds for one request to the node


def add_breaker_commands(sub: Any) -> None:
    """Add ``breaker`` to the ``stalwart`` subcommands."""
    breaker = sub.add_parser(
        "breaker", help="circuit breakers of a running node: list, force open, disable, close"
    )
    breaker.add_argument("--url", help="the node's API (default $STALWART_URL or 127.0.0.1:8470)")
    breaker.add_argument("--token", help="API token (default $STALWART_API_TOKEN)")
    actions = breaker.add_subparsers(dest="breaker_command", required=True)
    listing = actions.add_parser("list", help="every breaker, its state and any operator override")
    listing.add_argument("--json", action="store_true", help="the breakers as a JSON list")
    show = actions.add_parser("show", help="one breaker")
    show.add_argument("name", help="the dependency, e.g. openai:gpt-4o")
    for verb, state in _ORDERS.items():
        what = {
            "force-open": "reject every call until closed (in every agent process)",
            "disable": "let every call through and record nothing until closed",
            "metrics-only": "let every call through, keep measuring, never trip, until closed",
            "close": "end an override: closed, with a fresh window",
        }[verb]
        order = actions.add_parser(verb, help=what)
        order.add_argument("name", help="the dependency, e.g. openai:gpt-4o")
        order.set_defaults(breaker_state=state)


def _token(given: str | None) -> str | None:
    from stalwart.guard import resolve_setting

    return resolve_setting(given or os.environ.get("STALWART_API_TOKEN"))


def breaker_command(args: argparse.Namespace) -> int | None:
    """Run ``stalwart breaker ...``; None when ``args.command`` is another command."""
    if args.command != "breaker":
        return None
    url = (args.url or os.environ.get("STALWART_URL") or "http://127.0.0.1:8470").rstrip("/")
    try:
        token = _token(args.token)
    except StalwartError as exc:  # the secrets provider's own error says what is missing
        print(f"stalwart breaker: cannot resolve the API token: {exc}", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=_TIMEOUT) as client:
            if args.breaker_command == "list":
                response = client.get("/v1/breakers")
            elif args.breaker_command == "show":
                response = client.get(f"/v1/breakers/{args.name}")
            else:
                response = client.post(
                    f"/v1/breakers/{args.name}/state", json={"state": args.breaker_state}
                )
    except httpx.HTTPError as exc:
        print(f"stalwart breaker: cannot reach the node at {url}: {exc}", file=sys.stderr)
        return 2
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:300]}
    if response.status_code >= 400:
        print(f"stalwart breaker: {response.status_code}: {data.get('error')}", file=sys.stderr)
        return 1
    if args.breaker_command == "list" and args.json:
        print(json.dumps(data["breakers"]))
    elif args.breaker_command == "list":
        if not data["breakers"]:
            print("(none)")
        for row in data["breakers"]:
            override = f"  (override: {row['override']})" if row["override"] else ""
            print(f"{row['dependency']:40} {row['state']}{override}")
    else:
        print(json.dumps(data))
    return 0
