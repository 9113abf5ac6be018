"""``stalwart demo``: a supervision tree at work, one agent SIGKILLed mid-run.

Six worker agents, each its own OS process under a ``one_for_one`` supervisor,
serve a steady stream of calls. A few seconds in, one is killed with SIGKILL.
The live table shows the other five carrying on without a single failed call
while the supervisor restarts the killed one within milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from stalwart.config import RuntimeSettings
from stalwart.node import Node
from stalwart.observe import Event, EventBus
from stalwart.runtime import Agent, ChildSpec, SupervisorSpec

__all__ = ["DemoWorker", "run_demo"]


class DemoWorker(Agent):
    """Answers a 'ticket' after a little CPU work and a simulated model latency."""

    async def init(self, args: Any) -> None:
        self.handled = 0

    async def handle_call(self, request: Any) -> Any:
        digest = hashlib.sha256(str(request["ticket"]).encode()).hexdigest()
        await asyncio.sleep(request.get("latency", 0.02))
        self.handled += 1
        return {
            "ticket": request["ticket"],
            "answer": digest[:12],
            "pid": os.getpid(),
            "handled": self.handled,
        }


@dataclass
class _Row:
    pid: int = 0
    ok: int = 0
    failed: int = 0
    restarts: int = 0
    state: str = "running"
    latencies: list[float] = field(default_factory=list)


def _table(rows: dict[str, _Row], elapsed: float, duration: float, log: list[str]) -> Group:
    table = Table(title=f"stalwart demo — {elapsed:4.1f}s / {duration:.0f}s", expand=False)
    for col in ("agent", "pid", "state", "calls ok", "failed", "restarts", "p50 ms"):
        table.add_column(col, justify="right" if col not in ("agent", "state") else "left")
    for name, row in rows.items():
        style = {"running": "green", "restarting": "yellow"}.get(row.state, "red")
        p50 = statistics.median(row.latencies[-200:]) * 1000 if row.latencies else 0.0
        table.add_row(
            name,
            str(row.pid),
            Text(row.state, style=style),
            str(row.ok),
            str(row.failed),
            str(row.restarts),
            f"{p50:.1f}",
        )
    return Group(table, Text("\n".join(log[-6:]), style="dim"))


async def run_demo(
    *, agents: int = 6, duration: float = 8.0, kill_at: float = 3.0, console: Console | None = None
) -> int:
    console = console or Console()
    bus = EventBus(log=False)
    names = [f"worker-{i}" for i in range(1, agents + 1)]
    root = SupervisorSpec("root", [ChildSpec(n, DemoWorker, shutdown=2.0) for n in names])
    node = Node(
        root, RuntimeSettings(heartbeat_interval=0.5), events=bus, preload=["stalwart.cli._demo"]
    )
    rows = {n: _Row() for n in names}
    log: list[str] = []
    victim = random.Random().choice(names)
    facts: dict[str, Any] = {}

    def on_event(event: Event) -> None:
        name = event.fields.get("agent")
        if event.name == "agent_started" and name in rows:
            rows[name].pid = event["pid"]
            rows[name].state = "running"
        elif event.name == "agent_exited" and name in rows and event["reason"] != "shutdown":
            rows[name].state = "restarting"
            log.append(
                f"{time.strftime('%X')} {name} exited ({event['signal'] or event['exit_code']})"
            )
        elif event.name == "agent_restarted" and name in rows:
            rows[name].restarts += 1
            facts["restart_ms"] = event["restart_ms"]
            log.append(
                f"{time.strftime('%X')} {name} restarted in {event['restart_ms']:.1f} ms "
                f"(pid {event['pid']})"
            )

    bus.subscribe(on_event)
    done = asyncio.Event()

    async def drive() -> None:
        started = time.monotonic()

        async def stream(name: str) -> None:
            ticket = 0
            while not done.is_set():
                ticket += 1
                t0 = time.monotonic()
                try:
                    await node.call(name, {"ticket": f"{name}-{ticket}"}, timeout=2.0)
                    rows[name].ok += 1
                    rows[name].latencies.append(time.monotonic() - t0)
                except Exception:
                    rows[name].failed += 1
                    await asyncio.sleep(0.02)

        async def killer() -> None:
            await asyncio.sleep(kill_at)
            ref = node.runtime.whereis(victim)
            if ref is not None:
                facts["killed_pid"] = ref.pid
                log.append(f"{time.strftime('%X')} SIGKILL -> {victim} (pid {ref.pid})")
                os.kill(ref.pid, signal.SIGKILL)

        tasks = [asyncio.create_task(stream(n)) for n in names]
        tasks.append(asyncio.create_task(killer()))
        with Live(_table(rows, 0, duration, log), console=console, refresh_per_second=8) as live:
            while (elapsed := time.monotonic() - started) < duration:
                live.update(_table(rows, elapsed, duration, log))
                await asyncio.sleep(0.125)
            done.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            live.update(_table(rows, duration, duration, log))

    code = await node.run(until=drive())
    others = [r for n, r in rows.items() if n != victim]
    others_failed = sum(r.failed for r in others)
    restarted = rows[victim].restarts >= 1 and rows[victim].pid != facts.get("killed_pid")
    console.print()
    console.print(
        f"[bold]{victim}[/] was SIGKILLed at {kill_at:.1f} s and restarted in "
        f"{facts.get('restart_ms', float('nan')):.1f} ms; it then answered "
        f"{rows[victim].ok} calls in all."
    )
    console.print(
        f"The other {len(others)} agents answered {sum(r.ok for r in others)} calls with "
        f"[bold]{others_failed}[/] failures."
    )
    ok = code == 0 and others_failed == 0 and restarted
    console.print("[green]PASS[/]: crash isolated and recovered." if ok else "[red]FAIL[/]")
    console.print(
        "Next: `stalwart init myapp` starts a project of your own (an agent, a tool, its "
        "tests); `stalwart verify --plan` shows the readiness checks `stalwart verify` runs "
        "on the built-in helpdesk app; `stalwart --help` lists every command."
    )
    return 0 if ok else 1
