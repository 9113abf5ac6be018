"""``stalwart task watch ID``: a task's model text as it is generated, from a running node.

Reads ``GET /v1/tasks/{id}/events`` (server-sent events) of the node at ``--url``
(default ``$STALWART_URL`` or ``http://127.0.0.1:8470``) with ``--token`` (default
``$STALWART_API_TOKEN``). The text is printed as it comes; a dropped connection is
opened again with the last event id, so nothing is printed twice, for up to
``--timeout`` seconds in all. Exit codes: 0 the task succeeded, 4 it ended otherwise
(failed, cancelled, quarantined: its status and outcome on stderr; 4 as for ``task
status``), 2 the node could not be reached or refused (an unknown task), 3 the time ran
out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO

import httpx

from stalwart.cli._tasks import UNSUCCESSFUL

__all__ = ["add_watch_command", "watch"]


def add_watch_command(actions: Any) -> None:
    watch_cmd = actions.add_parser(
        "watch",
        help="print a task's model text as it is generated, from a running node (exit 0: "
        "it succeeded; 4: it failed, was cancelled or quarantined; 2: the node could not "
        "be reached or has no such task; 3: --timeout ran out)",
    )
    watch_cmd.add_argument("task_id", help="the task's id")
    watch_cmd.add_argument("--url", help="the node's API (default $STALWART_URL or :8470)")
    watch_cmd.add_argument("--token", help="the API token (default $STALWART_API_TOKEN)")
    watch_cmd.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to watch in all (default 600)"
    )
    watch_cmd.add_argument(
        "--json", action="store_true", help="print each event as a JSON line instead of text"
    )


def watch(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    url = (args.url or os.environ.get("STALWART_URL") or "http://127.0.0.1:8470").rstrip("/")
    token = args.token or os.environ.get("STALWART_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ends = time.monotonic() + args.timeout
    last: str | None = None
    failures = 0
    while time.monotonic() < ends:
        if last:
            headers["Last-Event-ID"] = last
        left = max(0.1, ends - time.monotonic())
        try:
            with (
                httpx.Client(
                    base_url=url, headers=headers, timeout=httpx.Timeout(10, read=left)
                ) as c,
                c.stream("GET", f"/v1/tasks/{args.task_id}/events") as response,
            ):
                if response.status_code != 200:
                    body = response.read().decode(errors="replace")
                    print(f"stalwart task watch: {_error(body)}", file=sys.stderr)
                    return 2
                for event, event_id, data in _events(response.iter_lines()):
                    failures = 0
                    if event_id:
                        last = event_id
                    if args.json:
                        print(json.dumps({"event": event, "id": event_id, **data}), file=out)
                    elif event == "delta":
                        out.write(str(data.get("text", "")))
                    out.flush()
                    if event == "end":
                        return _ended(data, out, args.json)
        except httpx.HTTPError as exc:
            failures += 1
            if failures >= 5:
                print(
                    f"stalwart task watch: cannot reach the node at {url}: {exc}", file=sys.stderr
                )
                return 2
            time.sleep(min(0.2 * 2**failures, 2.0))  # the node may be restarting
    print(f"stalwart task watch: still running after {args.timeout:g} s", file=sys.stderr)
    return 3


def _events(lines: Any) -> Any:
    """(event, id, data) per server-sent event."""
    event: dict[str, str] = {}
    for line in lines:
        if line.startswith(("id:", "event:", "data:")):
            key, _, value = line.partition(":")
            event[key] = value.strip()
        elif not line and event:
            data = json.loads(event["data"]) if "data" in event else {}
            yield event.get("event", "message"), event.get("id"), data
            event = {}


def _ended(data: dict[str, Any], out: TextIO, as_json: bool) -> int:
    if not as_json:
        out.write("\n")
    if data.get("status") == "succeeded":
        return 0
    print(
        f"stalwart task watch: the task ended {data.get('status')}: "
        f"{json.dumps(data.get('outcome'))[:2000]}",
        file=sys.stderr,
    )
    return UNSUCCESSFUL


def _error(body: str) -> str:
    try:
        return str(json.loads(body).get("error", body))
    except (ValueError, AttributeError):
        return body[:500]
