"""``stalwart secrets`` (the encrypted vault) and ``stalwart approvals`` (held tool calls).

Values are never printed unless asked (``get --reveal``); a value to set is
read from ``--value``, else from standard input (a terminal gets a hidden
prompt), so it stays out of shell history.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from stalwart.errors import ConfigError, SecretNotFound
from stalwart.guard import ApprovalQueue, LocalVault

__all__ = ["add_secret_commands", "secret_command"]


def add_secret_commands(sub: Any) -> None:
    """Add ``secrets`` and ``approvals`` to the CLI's subparsers."""
    secrets = sub.add_parser("secrets", help="set, get, rotate and list vault secrets")
    verbs = secrets.add_subparsers(dest="verb", required=True)
    for verb, text in (
        ("set", "store a secret (value from --value or standard input)"),
        ("get", "say whether a secret is set (--reveal prints it)"),
        ("rotate", "replace a secret's value (random unless --value or --stdin)"),
        ("list", "list secret names and versions"),
    ):
        p = verbs.add_parser(verb, help=text)
        if verb != "list":
            p.add_argument("name", help="the secret's name, as in secret://NAME")
        if verb in ("set", "rotate"):
            p.add_argument("--value", help="the value (prefer standard input: no shell history)")
        if verb == "rotate":
            p.add_argument("--stdin", action="store_true", help="read the new value from stdin")
        if verb == "get":
            p.add_argument("--reveal", action="store_true", help="print the value itself")
        if verb == "list":
            p.add_argument(
                "--json", action="store_true", help="a JSON list of {name, version} objects"
            )
        p.add_argument(
            "--vault", help="vault file (default: $STALWART_VAULT or .stalwart/vault.enc)"
        )
        p.add_argument("--key-file", help="key file (default: $STALWART_VAULT_KEY_FILE)")
    approvals = sub.add_parser("approvals", help="list, approve or deny held tool calls")
    averbs = approvals.add_subparsers(dest="verb", required=True)
    for verb in ("list", "approve", "deny"):
        p = averbs.add_parser(verb, help=f"{verb} held tool calls")
        if verb != "list":
            p.add_argument("id", help="the held call's id (from `approvals list`)")
            p.add_argument("--by", default=os.environ.get("USER", "cli"), help="who decides")
        else:
            p.add_argument(
                "--status",
                choices=["pending", "approved", "denied"],
                help="only calls in this state (default: all)",
            )
            p.add_argument("--reveal", action="store_true", help="show arguments unredacted")
            p.add_argument(
                "--json", action="store_true", help="one JSON object per line, no (none)"
            )
        p.add_argument("--store", required=True, help="the app's store URL (sqlite:///…)")


def _vault(args: argparse.Namespace) -> LocalVault:
    path = args.vault or os.environ.get("STALWART_VAULT", ".stalwart/vault.enc")
    key_file = args.key_file or os.environ.get("STALWART_VAULT_KEY_FILE") or None
    return LocalVault(path, key_file=key_file)


def _read_value(args: argparse.Namespace) -> str:
    if args.value:
        return str(args.value)
    if sys.stdin.isatty():
        return getpass.getpass(f"value of {args.name}: ")
    return sys.stdin.readline().rstrip("\r\n")


def secret_command(args: argparse.Namespace) -> int:
    """Run ``stalwart secrets …`` or ``stalwart approvals …``; returns the exit code."""
    try:
        if args.command == "approvals":
            return _approvals(args)
        vault = _vault(args)
        if args.verb == "set":
            version = vault.set(args.name, _read_value(args))
            print(f"{args.name}: set (version {version})")
        elif args.verb == "get":
            value = vault.get(args.name)
            if args.reveal:
                print(value)
            else:
                print(f"{args.name}: set (version {vault.version(args.name)}, {len(value)} chars)")
        elif args.verb == "rotate":
            new = _read_value(args) if (args.value or args.stdin) else None
            version = vault.rotate(args.name, new)
            print(f"{args.name}: rotated (version {version})")
        else:
            rows = [{"name": name, "version": vault.version(name)} for name in vault.names()]
            if args.json:
                print(json.dumps(rows))
            elif not rows:
                print("(none)")
            for row in [] if args.json else rows:
                print(f"{row['name']}\tversion {row['version']}")
        return 0
    except SecretNotFound as exc:
        print(f"stalwart secrets: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"stalwart {args.command}: {exc}", file=sys.stderr)
        return 2


def _approvals(args: argparse.Namespace) -> int:
    queue = ApprovalQueue(args.store)
    try:
        if args.verb == "list":
            entries = queue.list(args.status)
            if not entries and not args.json:
                print("(none)")
            for entry in entries:
                print(json.dumps(entry.as_dict(reveal=args.reveal), default=str))
            return 0
        decided = queue.decide(args.id, approve=args.verb == "approve", by=args.by)
        print(f"{decided.id}: {decided.status} ({decided.tool} for task {decided.task_id})")
        return 0
    finally:
        queue.close()
