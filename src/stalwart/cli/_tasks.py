"""``stalwart run`` for apps, and ``stalwart task submit|status|list|cancel``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from stalwart.errors import ConfigError, StalwartError

__all__ = ["add_task_commands", "ensure_cwd_importable", "is_app_ref", "task_command"]


def ensure_cwd_importable() -> None:
    """Make ``examples.helpdesk.app:app`` importable from the current directory, as
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
    submit = actions.add_parser("submit", parents=[where], help="store a new task for an agent")
    submit.add_argument("agent")
    submit.add_argument("input", help="the task input, as JSON")
    submit.add_argument("--id", dest="task_id")
    submit.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the end")
    status = actions.add_parser("status", parents=[where], help="one task's status and result")
    status.add_argument("task_id")
    listing = actions.add_parser("list", parents=[where], help="recent tasks")
    listing.add_argument(
        "--status",
        choices=["pending", "running", "awaiting_approval", "succeeded", "failed", "cancelled"],
    )
    cancel = actions.add_parser(
        "cancel",
        parents=[where],
        help="cancel a pending, running or awaiting_approval task (exit 1: unknown, "
        "3: it had already finished)",
    )
    cancel.add_argument("task_id")
    cancel.add_argument("--by", default="cli", help="who cancels (recorded in the outcome)")
    listing.add_argument("--limit", type=int, default=20)


def _store_url(args: argparse.Namespace) -> str:
    if args.store:
        return str(args.store)
    if args.app:
        from stalwart.agent import load_app

        return load_app(args.app).store
    raise ConfigError("say which store: --app module:attribute (or file.toml), or --store URL")


def _record(task: Any) -> dict[str, Any]:
    return {
        "id": task.id,
        "agent": task.agent,
        "status": task.status,
        "attempts": task.attempts,
        "outcome": task.outcome,
    }


async def _task(args: argparse.Namespace) -> int:
    from stalwart.durable import open_store

    store = await open_store(_store_url(args))
    try:
        if args.task_command == "submit":
            try:
                task_input = json.loads(args.input)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"the task input is not JSON: {exc}") from None
            task = await store.create_task(args.agent, task_input, task_id=args.task_id)
            if args.wait > 0:
                from stalwart.node import Tasks

                task = await Tasks(None, store).wait(task.id, timeout=args.wait)
            print(json.dumps(_record(task)))
        elif args.task_command == "status":
            found = await store.get_task(args.task_id)
            if found is None:
                print(f"stalwart task: no task {args.task_id!r}", file=sys.stderr)
                return 1
            print(json.dumps(_record(found), indent=2))
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
            for t in await store.list_tasks(status=args.status, limit=args.limit):
                print(json.dumps(_record(t)))
        return 0
    finally:
        await store.close()


def task_command(args: argparse.Namespace) -> int:
    ensure_cwd_importable()
    try:
        return asyncio.run(_task(args))
    except StalwartError as exc:
        print(f"stalwart task: {exc}", file=sys.stderr)
        return 2
