"""``stalwart demo --helpdesk`` (``make demo``): 50 helpdesk tickets through triage ->
resolver, one agent SIGKILLed midway, then ``stalwart verify`` on the same app: the
production-readiness report.

Runs entirely on embedded defaults: a SQLite store in a temporary directory and
the simulated models and services; the sim's API key (``secret://sim-api-key``)
lives in a local vault beside the store, where the node creates it. Shows a
progress bar, then a summary table, then the readiness checklist item by item (a
few minutes: the load, chaos and soak items run short;
``--no-verify`` skips it). Exits non-zero if any ticket was lost, any side effect
was delivered twice, or a critical checklist item failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stalwart.demo.tickets import generate
from stalwart.node import app_node
from stalwart.observe import Event, EventBus

__all__ = ["APP", "helpdesk_demo", "main"]

APP = "stalwart.demo.app:app"


async def run(count: int, seed: int, kill: bool, console: Console) -> int:
    workdir = tempfile.mkdtemp(prefix="stalwart-demo-")
    store = f"sqlite:///{workdir}/helpdesk.db"
    # the run's own vault (the agents inherit these): nothing is written outside workdir
    os.environ["STALWART_SECRETS"] = "vault"
    os.environ["STALWART_VAULT"] = f"{workdir}/vault.enc"
    os.environ["STALWART_VAULT_KEY_FILE"] = f"{workdir}/vault.key"
    bus = EventBus(log=False)
    restarts: list[Event] = []
    bus.subscribe(lambda e: restarts.append(e) if e.name == "agent_restarted" else None)
    node, service = app_node(APP, store=store, events=bus)
    tickets = generate(count, seed=seed)
    outcomes: dict[str, Any] = {}
    facts: dict[str, Any] = {}

    async def work() -> None:
        async with asyncio.timeout(30):
            while not node.ready:  # noqa: ASYNC110 - the node has no "ready" event to await
                await asyncio.sleep(0.01)
        tasks = service.tasks
        assert tasks is not None
        started = time.monotonic()
        ids = [await tasks.submit("triage", t, task_id=t["id"], seed=seed) for t in tickets]
        kill_after = random.Random(seed).randint(count // 4, count // 2)
        columns = (
            TextColumn("[bold]tickets"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("", total=len(ids))
            for n, task_id in enumerate(ids, start=1):
                if kill and n == kill_after:
                    ref = node.runtime.whereis("resolver")
                    if ref is not None:
                        os.kill(ref.pid, signal.SIGKILL)
                        facts["killed"] = ("resolver", ref.pid, n)
                        progress.update(bar, description=f"[red]SIGKILL resolver (pid {ref.pid})")
                outcomes[task_id] = await tasks.wait(task_id, timeout=120)
                progress.update(bar, advance=1)
        facts["seconds"] = time.monotonic() - started
        facts["report"] = service.sim.world.tools.report() if service.sim else {}

    code = await node.run(until=work())
    return summarize(console, tickets, outcomes, facts, restarts, code, workdir)


def summarize(  # noqa: PLR0917 - one call site, all of it the run's outcome
    console: Console,
    tickets: list[dict[str, Any]],
    outcomes: dict[str, Any],
    facts: dict[str, Any],
    restarts: list[Event],
    code: int,
    workdir: str,
) -> int:
    completed = sum(
        1
        for t in outcomes.values()
        if t.status == "succeeded" and (t.outcome or {}).get("status") == "completed"
    )
    # a side effect the kill cut off mid-call is not repeated (no duplicate): its ticket
    # ends saying the outcome is unknown -- neither lost nor a failure
    unknown = sum(
        1
        for t in outcomes.values()
        if t.status == "succeeded" and (t.outcome or {}).get("status") == "outcome_unknown"
    )
    failed = len(outcomes) - completed - unknown
    usage = [((t.outcome or {}).get("usage") or {}) for t in outcomes.values()]

    def total(key: str) -> float:
        return sum(float(u.get(key, 0)) for u in usage)

    report = facts.get("report", {})
    dups = report.get("duplicates", {})
    table = Table(title="helpdesk run", show_header=True)
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("tickets submitted", len(tickets)),
        ("completed", completed),
        ("outcome unknown (effect cut off)", unknown),
        ("failed / not finished", failed + (len(tickets) - len(outcomes))),
        ("steps (model + tool calls)", int(total("model_calls") + total("tool_calls"))),
        ("tokens", int(total("prompt_tokens") + total("completion_tokens"))),
        ("cost (USD)", f"{total('cost_usd'):.4f}"),
        ("model fallbacks", int(total("fallbacks"))),
        ("agent restarts", len(restarts)),
        ("blocked tool calls", int(total("denied_tool_calls"))),
        (
            "refunds delivered / duplicates",
            f"{len(report.get('deliveries', {}).get('payments', {}))} / {dups.get('payments', 0)}",
        ),
        (
            "e-mails delivered / duplicates",
            f"{len(report.get('deliveries', {}).get('email', {}))} / {dups.get('email', 0)}",
        ),
        ("wall time (s)", f"{facts.get('seconds', 0):.2f}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    if "killed" in facts:
        agent, pid, at = facts["killed"]
        console.print(
            f"{agent} (pid {pid}) was SIGKILLed after ticket {at}; its supervisor "
            f"restarted it and every interrupted ticket resumed from its journal."
        )
    console.print(
        f"\nWhere to look next: the tickets are in {workdir}/helpdesk.db (`stalwart task "
        f"list --store sqlite:///{workdir}/helpdesk.db`); the app is {APP} (its source: "
        "stalwart/demo/app.py); `stalwart init myapp` starts a project of your own."
    )
    ok = code == 0 and failed == 0 and len(outcomes) == len(tickets) and not any(dups.values())
    console.print(
        "[green]PASS[/]: nothing lost, nothing delivered twice." if ok else "[red]FAIL[/]"
    )
    return 0 if ok else 1


VERIFY_DEADLINE_S = 900.0
"""The whole readiness run must end by then (it takes a few minutes on 2 cores)."""


def verify(out: str, console: Console) -> int:
    """``stalwart verify`` on the helpdesk, as a user would run it; its exit code."""
    console.print(f"\n[bold]stalwart verify[/] {APP} --out {out}")
    command = [sys.executable, "-m", "stalwart.cli", "verify", APP]
    try:
        done = subprocess.run([*command, "--out", out], timeout=VERIFY_DEADLINE_S, check=False)
    except subprocess.TimeoutExpired:
        console.print(f"[red]stalwart verify did not finish in {VERIFY_DEADLINE_S:g} s[/]")
        return 1
    console.print(f"The report: {out}/readiness.html (and readiness.md, readiness.json).")
    return done.returncode


def helpdesk_demo(
    *, tickets: int = 50, seed: int = 7, kill: bool = True, verify_out: str | None = "readiness"
) -> int:
    """The run, then (unless ``verify_out`` is None) the readiness report; the exit code."""
    console = Console()
    code = asyncio.run(run(tickets, seed, kill, console))
    if code == 0 and verify_out is not None:
        code = verify(verify_out, console)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--no-verify", action="store_true", help="skip the readiness report")
    parser.add_argument("--verify-out", default="readiness", help="report directory")
    args = parser.parse_args(argv)
    return helpdesk_demo(
        tickets=args.tickets,
        seed=args.seed,
        kill=not args.no_kill,
        verify_out=None if args.no_verify else args.verify_out,
    )


if __name__ == "__main__":
    sys.exit(main())
