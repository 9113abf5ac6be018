"""``stalwart store check URL`` and ``stalwart store recover URL --to NEW``.

On PostgreSQL, ``check`` verifies that the database answers and holds a current
schema (the server checks its own pages: ``initdb --data-checksums``).

Exit codes -- check: 0 the store is sound; 1 it is damaged (the problems are
printed); 2 it could not be checked (bad URL, no such file, no schema, database
unreachable). recover: 0 every row was copied; 1 the new file was written but
some rows could not be read (the report says how many, per table); 2 nothing
was done (bad URL, an existing ``--to`` file, a PostgreSQL URL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
from typing import Any

from stalwart.errors import StalwartError

__all__ = ["add_store_commands", "store_command"]


def add_store_commands(sub: Any) -> None:
    store = sub.add_parser("store", help="check a store, or salvage a damaged SQLite store")
    actions = store.add_subparsers(dest="store_command", required=True)
    check = actions.add_parser(
        "check", help="integrity and checksums of every record (reads only; exit 1 if damaged)"
    )
    check.add_argument("url", help="the store URL (sqlite:///path.db or postgresql://...)")
    recover = actions.add_parser(
        "recover", help="copy every readable row of a damaged SQLite store into a new file"
    )
    recover.add_argument("url", help="the damaged store (sqlite:///path.db)")
    recover.add_argument("--to", required=True, help="the NEW file to write (must not exist)")


def _sqlite_path(url: str) -> pathlib.Path | None:
    from stalwart.db import parse_url

    parsed = parse_url(url, setting="store URL")
    return pathlib.Path(parsed.target) if parsed.dialect == "sqlite" else None


async def _check_postgres(url: str) -> int:
    from stalwart.durable import store_from_url

    store = store_from_url(url, migrate=False)
    await store.open()  # SchemaMissing names the URL when there is no store there
    try:
        version = await store.schema_version()
        await store.list_tasks(limit=1)  # the tables answer
    finally:
        await store.close()
    print(json.dumps({"url": store.url, "sound": True, "schema_version": version}))
    return 0


def store_command(args: argparse.Namespace) -> int | None:
    if args.command != "store":
        return None
    from stalwart.durable._salvage import as_dict, check_sqlite, recover_sqlite

    try:
        path = _sqlite_path(args.url)
        if args.store_command == "check":
            if path is None:
                return asyncio.run(_check_postgres(args.url))
            report = check_sqlite(path)
            print(json.dumps(as_dict(report), indent=2))
            return 0 if report.sound else 1
        if path is None:
            print(
                "stalwart store recover: only SQLite files are salvaged here; for PostgreSQL "
                "use its own tools (pg_dump, point-in-time recovery)",
                file=sys.stderr,
            )
            return 2
        from stalwart.durable._schema import COMPONENT
        from stalwart.guard._db import COMPONENT as GUARD

        result = recover_sqlite(path, pathlib.Path(args.to), [COMPONENT, GUARD])
        print(json.dumps(as_dict(result), indent=2))
        if not result.complete:
            print(
                f"stalwart store recover: some rows of {path} could not be read (see 'lost' "
                f"and 'errors' above); {args.to} holds everything that could",
                file=sys.stderr,
            )
            return 1
        return 0
    except StalwartError as exc:
        print(f"stalwart store {args.store_command}: {exc}", file=sys.stderr)
        return 2
