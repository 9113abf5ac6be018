"""``stalwart run`` for apps, and ``stalwart task submit|status|list|retry|cancel|watch``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from stalwart.durable import TASK_STATUSES
from stalwart.errors import ConfigError, StalwartError

__all__ = [
    "ENDED_BADLY",
    "UNSUCCESSFUL",
    "add_task_commands",
    "ensure_cwd_importable",
    "is_app_ref",
    "task_command",
    "task_table",
]

ENDED_BADLY = frozenset({"failed", "cancelled", "quarantined"})
UNSUCCESSFUL = 4
"""The exit status of ``task status`` (and ``task submit --wait``) for a task that ended
failed, cancelled or quarantined: a script can tell it from "no such task" (1) and a
usage error (2)."""


def task_table(records: list[dict[str, Any]]) -> str:
    """Tasks as a table for a terminal, or ``(none)``."""
    if not records:
        return "(none)"
    rows = [("ID", "AGENT", "STATUS", "ATTEMPTS", "RESULT")]
    for r in records:
        outcome = r.get("outcome")
        if isinstance(outcome, dict):
            result = outcome.get("answer") or outcome.get("message") or json.dumps(outcome)
        else:
            result = "" if outcome is None else json.dumps(outcome)
        result = " ".join(str(result).split())
        rows.append(
            (str(r["id"]), str(r["agent"]), str(r["status"]), str(r["attempts"]),
             result[:60] + ("…" if len(result) > 60 else ""))
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in rows
    ).rstrip()


def ensure_cwd_importable() -> None:
    """Make ``app:app`` (an app.py in the current directory) importable, as
    ``python -m`` would (the ``stalwart`` script's own directory is on sys.path instead)."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def is_app_ref(ref: str) -> bool:
    """True if ``ref`` names an :class:`~stalwart.agent.App` (a .toml file, or an App object)."""
    if ref.endswith(".toml"):
        return True
    from stalwart.agent import App, load_app

    try:
        return isinstance(load_app(ref), App)
    except ConfigError:
        return False


def add_task_commands(sub: Any) -> None:
    task = sub.add_parser("task", help="submit a task, or look at tasks, in an app's store")
    actions = task.add_subparsers(dest="task_command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--app", help="the app (module:attribute or .toml) whose store to use")
    where.add_argument("--store", help="a store URL (instead of --app)")
    submit = actions.add_parser(
        "submit",
        parents=[where],
        help="store a new task for an agent (with --wait: exit 4 if it ends failed, "
        "cancelled or quarantined)",
    )
    submit.add_argument("agent", help="the agent to run it (with --app, one of the app's agents)")
    submit.add_argument("input", help="the task input, as JSON")
    submit.add_argument("--id", dest="task_id", help="the task's id (default: a new one)")
    submit.add_argument(
        "--principal",
        help="who the task is for: an id (alice@example.com) or JSON "
        '{"id": ..., "kind": ..., "attrs": {...}}; its rules see it (docs/security.md)',
    )
    submit.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the end")
    status = actions.add_parser(
        "status",
        parents=[where],
        help="one task's status and result (exit 1: no such task; 4: it failed, was "
        "cancelled or quarantined)",
    )
    status.add_argument("task_id", help="the task's id")
    listing = actions.add_parser(
        "list", parents=[where], help="recent tasks, newest first (a table on a terminal)"
    )
    listing.add_argument("--status", choices=list(TASK_STATUSES), help="only tasks in this status")
    listing.add_argument("--agent", help="only tasks of this agent")
    listing.add_argument(
        "--json", action="store_true", help="one JSON object per line (the default when piped)"
    )
    cancel = actions.add_parser(
        "cancel",
        parents=[where],
        help="cancel a pending, running or awaiting_approval task (exit 1: unknown, "
        "3: it had already finished)",
    )
    cancel.add_argument("task_id", help="the task's id")
    cancel.add_argument("--by", default="cli", help="who cancels (recorded in the outcome)")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    from stalwart.cli._watch import add_watch_command

    add_watch_command(actions)
    retry = actions.add_parser(
        "retry", parents=[where], help="run a failed or quarantined task again (after a fix)"
    )
    retry.add_argument("task_id", help="the task's id")


def _store_url(args: argparse.Namespace) -> str:
    if args.store:
        return str(args.store)
    if args.app:
        from stalwart.agent import load_app

        return load_app(args.app).store
    raise ConfigError("say which store: --app module:attribute (or file.toml), or --store URL")


def _record(task: Any) -> dict[str, Any]:
    """A task as the CLI prints it, redacted whatever the store holds: PII, credentials,
    the gazetteer's names and places and the secrets this process knows (the fast tier).
    The outcome was redacted on the output tier, the NER model's, when the task finished;
    the HTTP API's view runs that tier again, but a CLI run would spend 1-2 s of CPU
    loading the model for it."""
    from stalwart.guard import default_redactor

    return default_redactor().redact_data(_fields(task), policy="redact")  # type: ignore[no-any-return]


def _fields(task: Any) -> dict[str, Any]:
    return {
        "id": task.id,
        "agent": task.agent,
        "status": task.status,
        "attempts": task.attempts,
        "outcome_unknown": isinstance(task.outcome, dict)
        and task.outcome.get("outcome_unknown") is True,
        "outcome": task.outcome,
    }


async def _task(args: argparse.Namespace) -> int:
    from stalwart.durable import open_store

    # Only the commands that write (submit, retry, cancel) open the store for writing;
    # looking at tasks never creates or migrates a schema.
    writes = args.task_command in ("submit", "retry", "cancel")
    store = await open_store(_store_url(args), migrate=writes)
    try:
        if args.task_command == "submit":
            try:
                task_input = json.loads(args.input)
                json.dumps(task_input, ensure_ascii=False).encode("utf-8")  # lone surrogates
            except json.JSONDecodeError as exc:
                raise ConfigError(f"the task input is not JSON: {exc}") from None
            except RecursionError:
                raise ConfigError("the task input is nested too deeply: flatten it") from None
            except (ValueError, UnicodeEncodeError) as exc:  # 5,000-digit ints, surrogates
                raise ConfigError(f"the task input is not usable JSON: {exc}") from None
            from stalwart.agent import App, load_app
            from stalwart.node import Tasks

            # the app's admission limits apply here too (its defaults with --store alone):
            # an overloaded store refuses the task with a clear error, exit 2
            app = load_app(args.app) if args.app else None
            if app is not None and args.agent not in {a.name for a in app.agents}:
                names = ", ".join(a.name for a in app.agents)
                raise ConfigError(f"the app has no agent {args.agent!r}; its agents: {names}")
            limits = app if app is not None else App
            tasks = Tasks(
                None,
                store,
                app,
                max_pending=limits.max_pending,
                max_pending_node=limits.max_pending_node,
            )
            principal: Any = args.principal
            if principal is not None and principal.lstrip().startswith("{"):
                try:
                    principal = json.loads(principal)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"--principal is not JSON: {exc}") from None
            task_id = await tasks.submit(
                args.agent, task_input, task_id=args.task_id, principal=principal
            )
            found = await store.get_task(task_id)
            assert found is not None
            task = found
            if args.wait > 0:
                task = await tasks.wait(task.id, timeout=args.wait)
            print(json.dumps(_record(task)))
            return UNSUCCESSFUL if task.status in ENDED_BADLY else 0
        elif args.task_command == "status":
            found = await store.get_task(args.task_id)
            if found is None:
                print(f"stalwart task: no task {args.task_id!r}", file=sys.stderr)
                return 1
            print(json.dumps(_record(found), indent=2))
            if found.status in ENDED_BADLY:
                print(f"stalwart task: task {found.id!r} is {found.status}", file=sys.stderr)
                return UNSUCCESSFUL
        elif args.task_command == "retry":
            found = await store.get_task(args.task_id)
            if found is None:
                print(f"stalwart task: no task {args.task_id!r}", file=sys.stderr)
                return 1
            if not await store.retry(found.id):
                print(
                    f"stalwart task: task {found.id!r} is {found.status}: only a failed or "
                    "quarantined task can be retried",
                    file=sys.stderr,
                )
                return 1
            retried = await store.get_task(found.id)
            print(json.dumps(_record(retried if retried is not None else found)))
        elif args.task_command == "cancel":
            from stalwart.node import Tasks

            done = await Tasks(None, store).cancel(args.task_id, by=args.by)
            if done is None:
                print(f"stalwart task: no task {args.task_id!r}", file=sys.stderr)
                return 1
            print(json.dumps(_record(done.task)))
            if not done.cancelled:
                print(
                    f"stalwart task: task {args.task_id!r} had already finished "
                    f"({done.task.status}); nothing to cancel",
                    file=sys.stderr,
                )
                return 3
        else:
            rows = await store.list_tasks(
                status=args.status, agent=args.agent, limit=args.limit, newest_first=True
            )
            if args.json or not sys.stdout.isatty():
                for t in rows:
                    print(json.dumps(_record(t)))
            else:
                print(task_table([_record(t) for t in rows]))
        return 0
    finally:
        await store.close()


def task_command(args: argparse.Namespace) -> int:
    if args.task_command == "watch":  # the node's API, not the store
        from stalwart.cli._watch import watch

        return watch(args)
    ensure_cwd_importable()
    try:
        return asyncio.run(_task(args))
    except StalwartError as exc:
        print(f"stalwart task: {exc}", file=sys.stderr)
        return 2
