"""``stalwart logs``, ``stalwart alerts`` and the server flags of ``stalwart run``.

Kept here (beside what they drive) so ``stalwart.cli`` only wires them in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from stalwart.db import redact
from stalwart.errors import ConfigError, StoreError
from stalwart.observe import LogQuery, default_rules, load_rules, parse_since, prometheus_rules
from stalwart.server._app import fire_test
from stalwart.server._logstore import search_logs
from stalwart.server._notify import Dispatcher
from stalwart.server._service import ObservabilityService, notifiers_from_settings
from stalwart.server._settings import ServerSettings

__all__ = ["add_commands", "add_run_flags", "run_command", "service_from_args"]


def add_run_flags(run: argparse.ArgumentParser) -> None:
    """The HTTP/log-store flags of ``stalwart run`` (each also has a STALWART_* variable)."""
    run.add_argument("--http-host", help="listen address (default 127.0.0.1)")
    run.add_argument("--http-port", type=int, help="listen port (default 8470; 0 = any free)")
    run.add_argument("--log-db", help="log store file (default stalwart-logs.db)")
    run.add_argument("--no-http", action="store_true", help="run without the HTTP server")
    run.add_argument(
        "--log-format", choices=("auto", "console", "json"),
        help="log lines for people (console) or machines (json); default "
        "$STALWART_LOG_FORMAT or auto: console and a start-up banner on a terminal, json "
        "otherwise",
    )  # fmt: skip


def service_from_args(args: argparse.Namespace) -> ObservabilityService | None:
    """The observability service ``stalwart run`` starts (None with ``--no-http``)."""
    if getattr(args, "no_http", False):
        return None
    overrides: dict[str, Any] = {}
    if args.http_host:
        overrides["host"] = args.http_host
    if args.http_port is not None:
        overrides["port"] = args.http_port
    if args.log_db:
        overrides["log_db"] = args.log_db
    return ObservabilityService(ServerSettings.from_env(**overrides))


def add_commands(sub: Any) -> None:
    """Add ``logs`` and ``alerts`` to the ``stalwart`` subcommands."""
    logs = sub.add_parser("logs", help="search the log store (agent, task, time range, text)")
    logs.add_argument(
        "--db",
        help="log store file or postgresql:// URL (default $STALWART_LOG_DB or stalwart-logs.db)",
    )
    logs.add_argument("--agent", help="agent id")
    logs.add_argument("--task", help="task id")
    logs.add_argument("--trace", help="trace id")
    logs.add_argument(
        "--level",
        choices=["debug", "info", "warning", "error", "critical"],
        help="lines at this level and above (warning: warnings, errors and critical lines)",
    )
    logs.add_argument("--event", help="event name")
    logs.add_argument("--since", help="10m, 2h, 1d or an ISO-8601 time")
    logs.add_argument("--until", help="10m, 2h, 1d or an ISO-8601 time")
    logs.add_argument("--grep", help="substring of the line (case-insensitive)")
    logs.add_argument("--limit", type=int, default=1000, help="newest N lines (default 1000)")
    alerts = sub.add_parser("alerts", help="alert rules: list, export, fire a test")
    alerts.add_argument(
        "--rules", help="TOML file of rule changes (default $STALWART_ALERT_RULES, else none)"
    )
    asub = alerts.add_subparsers(dest="alerts_command", required=True)
    alist = asub.add_parser("list", help="print the rules with thresholds")
    alist.add_argument("--json", action="store_true", help="the rules as a JSON list")
    export = asub.add_parser("export", help="write the rules as a Prometheus rules file")
    export.add_argument("-o", "--output", help="file to write (default stdout)")
    test = asub.add_parser("test", help="fire one alert (then resolve it) at the notifiers")
    test.add_argument("name", help="rule name, e.g. RestartStorm")
    test.add_argument(
        "--severity",
        choices=["warning", "critical"],
        default="warning",
        help="which of the rule's thresholds to fire (default warning)",
    )


def number(value: float) -> str:
    """A threshold as people write it: 268435456, 0.05, 1.5 -- never 2.68435e+08."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def run_command(args: argparse.Namespace) -> int | None:
    """Run ``logs``/``alerts``; None when ``args.command`` is not one of them."""
    if args.command == "logs":
        return _logs(args)
    if args.command == "alerts":
        return _alerts(args)
    return None


def _logs(args: argparse.Namespace) -> int:
    path = args.db or os.environ.get("STALWART_LOG_DB") or "stalwart-logs.db"
    shown = redact(path)
    if "://" not in path and not os.path.exists(path):
        print(f"stalwart logs: no log store at {path!r} (use --db)", file=sys.stderr)
        return 2
    scheme = path.partition("://")[0] if "://" in path else ""
    if scheme and scheme not in ("postgresql", "postgres", "sqlite"):
        print(
            f"stalwart logs: --db {shown!r} has an unsupported scheme {scheme!r}; give a "
            "file path or postgresql://user@host:port/dbname",
            file=sys.stderr,
        )
        return 2
    now = time.time()
    try:
        since = parse_since(args.since, now=now) if args.since else None
        until = parse_since(args.until, now=now) if args.until else None
    except ValueError as exc:
        print(f"stalwart logs: {exc}", file=sys.stderr)
        return 2
    if not 1 <= args.limit <= 100_000:
        print("stalwart logs: --limit must be in 1..100000", file=sys.stderr)
        return 2
    q = LogQuery(
        agent_id=args.agent, task_id=args.task, trace_id=args.trace, level=args.level,
        event=args.event, since=since, until=until, grep=args.grep, limit=args.limit,
    )  # fmt: skip
    try:
        rows = search_logs(path, q)  # read-only: never creates the tables
    except (StoreError, ConfigError) as exc:  # unreachable, refused, not a log store
        print(f"stalwart logs: cannot read the log store at --db {shown!r}: {exc}", file=sys.stderr)
        return 2
    if not rows and sys.stdout.isatty():
        print("(none)")
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _alerts(args: argparse.Namespace) -> int:
    path = args.rules or os.environ.get("STALWART_ALERT_RULES")
    try:
        rules = load_rules(path) if path else default_rules()
    except ConfigError as exc:
        print(f"stalwart alerts: {exc}", file=sys.stderr)
        return 2
    if args.alerts_command == "list" and args.json:
        print(json.dumps([
            {"name": r.name, "kind": r.kind, "metric": r.metric, "summary": r.summary,
             "warning": {"value": r.warning.value, "for_s": r.warning.for_s},
             "critical": {"value": r.critical.value, "for_s": r.critical.for_s}}
            for r in rules
        ]))  # fmt: skip
        return 0
    if args.alerts_command == "list":
        if not rules:
            print("(none)")
        for r in rules:
            print(
                f"{r.name:22} {r.kind:8} {r.metric:40} "
                f"warning>={number(r.warning.value)} for {number(r.warning.for_s)}s  "
                f"critical>={number(r.critical.value)} for {number(r.critical.for_s)}s"
            )
        return 0
    if args.alerts_command == "export":
        text = prometheus_rules(rules)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
        return 0
    try:
        settings = ServerSettings.from_env()
    except ConfigError as exc:
        print(f"stalwart alerts test: {exc}", file=sys.stderr)
        return 2
    by_name = {r.name: r for r in rules}
    if args.name not in by_name:
        print(f"stalwart alerts test: no rule {args.name!r}; rules: {', '.join(by_name)}",
              file=sys.stderr)  # fmt: skip
        return 2
    notifiers = notifiers_from_settings(settings, node=os.uname().nodename)
    if not notifiers:
        print("stalwart alerts test: no notifier configured (STALWART_ALERT_WEBHOOK_URL, "
              "STALWART_ALERT_SLACK_URL, STALWART_ALERTMANAGER_URL, STALWART_SMTP_HOST)",
              file=sys.stderr)  # fmt: skip
        return 2
    return asyncio.run(_fire(notifiers, rules, args.name, args.severity))


async def _fire(notifiers: Any, rules: Any, name: str, severity: str) -> int:
    from stalwart.observe import AlertEvaluator

    dispatcher = Dispatcher(notifiers)
    results = await fire_test(dispatcher, AlertEvaluator(rules), name, severity)
    for notifier, outcome in results.items():
        print(f"{notifier}: {outcome}")
    return 0 if all(v == "sent" for v in results.values()) else 1
