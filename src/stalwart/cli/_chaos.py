"""``stalwart chaos``, ``stalwart load`` and ``stalwart soak`` (see ``docs/chaos.md``).

:func:`add_chaos_commands` adds the three sub-commands to the ``stalwart``
parser; :func:`chaos_command` runs one of them (None for any other command).
:func:`main` parses and runs on its own (``python -m stalwart.cli._chaos``).
Exit codes: 0 the run passed its checks, 1 it failed them (the JSON says
which), 2 the run could not start (bad option, app not found), 3 (chaos) no fault
took effect, so the run proves nothing about faults (NOT RUN).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from typing import Any

from stalwart.errors import ConfigError, StalwartError

__all__ = ["add_chaos_commands", "chaos_command", "main", "parse_duration"]

COMMANDS = ("chaos", "load", "soak")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``24h`` or ``1h30m``."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 10m, 24h)")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * unit[u] for n, u in parts)


def _common(p: argparse.ArgumentParser, *, duration: str, rate: float | None) -> None:
    p.add_argument("--app", default="stalwart.demo.app:app",
                   help="module:attribute of the app to run (default: helpdesk)")  # fmt: skip
    p.add_argument("--store", help="store URL (default: a fresh SQLite file in a temp dir)")
    p.add_argument("--agent", help="the agent that receives the tasks (default: the app's "
                   "entry agent, else its first)")  # fmt: skip
    # no default of our own: the demo's tickets, the default once, went to every --app and
    # failed there (the warehouse's 40 of 40 tasks, KeyError 'sku'), and the run passed
    p.add_argument("--inputs", default=None,
                   help="generator of task inputs, module:fn(count, seed) (default: the "
                   "app's workload, App.workload)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="seed of inputs, arrivals, faults")
    p.add_argument("--duration", type=parse_duration, default=parse_duration(duration),
                   help=f"how long to send tasks (default {duration})")  # fmt: skip
    p.add_argument("--rate", type=float, default=rate, help="tasks per second")
    p.add_argument("--drain", type=parse_duration, default=120.0,
                   help="how long to wait for the last tasks to finish (default 120s)")  # fmt: skip
    p.add_argument("--max-pending", type=int, default=None,
                   help="admission limit: tasks waiting per agent before new ones are "
                   "refused as Overloaded (default: none, queue without bound)")  # fmt: skip
    p.add_argument("--out", help="write the results as JSON to this file")
    p.add_argument("--verbose", action="store_true", help="show the node's info logs")


def add_chaos_commands(sub: Any) -> None:
    """Add ``chaos``, ``load`` and ``soak`` to a ``stalwart`` sub-parser set."""
    from stalwart.chaos import KINDS

    chaos = sub.add_parser("chaos", help="inject faults under load; check nothing is lost")
    _common(chaos, duration="300s", rate=10.0)
    chaos.add_argument("--faults", default=",".join(KINDS),
                       help=f"fault kinds to mix (default all: {','.join(KINDS)})")  # fmt: skip
    chaos.add_argument("--interval", type=float, default=2.5, help="seconds between faults")
    chaos.add_argument("--max-fault", type=float, default=2.0, help="longest fault, seconds")
    chaos.add_argument("--store-quota-mb", type=int, default=None,
                       help="store on a tmpfs of this size, for disk_full (default 64 as root "
                       "with the default store; 0: none)")  # fmt: skip
    chaos.add_argument("--no-proxy", action="store_true", help="agents reach the sim directly")
    chaos.add_argument("--pg-restart-cmd",
                       help="opt-in: a command that restarts the PostgreSQL server of --store "
                       "(e.g. 'pg_ctlcluster 16 main restart'); adds pg_restart")  # fmt: skip
    chaos.add_argument("--no-peer-node", action="store_true",
                       help="no second node (the node_kill fault is then skipped)")  # fmt: skip
    chaos.add_argument("--no-reference", action="store_true",
                       help="skip the fault-free run (results are then not compared)")  # fmt: skip
    load = sub.add_parser("load", help="load at 1x, 2x, 3x the average rate; latency, errors")
    _common(load, duration="30s", rate=None)
    load.add_argument("--levels", default="1,2,3", help="multiples of the average rate")
    load.add_argument("--calibrate", type=int, default=60,
                      help="tasks of the capacity measurement (without --rate)")  # fmt: skip
    load.add_argument("--base-fraction", type=float, default=0.5,
                      help="average rate = measured capacity x this (default 0.5)")  # fmt: skip
    load.add_argument("--latency-bound", type=float, help="p99 seconds each level must keep")
    load.add_argument("--reference-sample", type=int, default=200,
                      help="tasks compared with a fault-free run (default 200)")  # fmt: skip
    load.add_argument("--api", choices=("http", "inprocess"), default="http",
                      help="via the node's HTTP task API (default) or in-process")  # fmt: skip
    soak = sub.add_parser("soak", help="steady load for long; flags leaks and growth")
    _common(soak, duration="10m", rate=5.0)
    soak.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    soak.add_argument("--warmup", type=float, default=0.25,
                      help="share of the run left out of the trend fit (default 0.25)")  # fmt: skip
    soak.add_argument("--confidence", type=float, default=0.95, help="of the slope interval")
    soak.add_argument("--reference-sample", type=int, default=200,
                      help="tasks compared with a fault-free run (default 200)")  # fmt: skip
    soak.add_argument("--leak-mb-per-min", type=float, default=0.0, help=argparse.SUPPRESS)


def _target(args: argparse.Namespace, quota: int | None = None) -> Any:
    from stalwart.chaos import TargetConfig

    return TargetConfig(
        app=args.app,
        store=args.store,
        agent=args.agent,
        inputs=args.inputs,
        seed=args.seed,
        proxy=not getattr(args, "no_proxy", False),
        quota_mb=quota,
        max_pending=args.max_pending,
    )


def _quota(args: argparse.Namespace) -> int | None:
    if args.store_quota_mb is not None:
        return args.store_quota_mb or None
    return 64 if os.geteuid() == 0 and not args.store else None


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from stalwart.chaos import ChaosConfig, LoadConfig, SoakConfig, run_chaos, run_load, run_soak
    from stalwart.chaos._report import Progress

    if args.command == "chaos":
        kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
        from stalwart.chaos import KINDS, OPT_IN

        unknown = sorted(set(kinds) - set(KINDS) - set(OPT_IN))
        if unknown:
            raise ConfigError(f"unknown fault kind(s) {unknown}; known: {', '.join(KINDS)}")
        progress = Progress(args.duration, label="chaos")
        cfg = ChaosConfig(
            target=_target(args, _quota(args)),
            duration=args.duration,
            rate=args.rate,
            kinds=kinds,
            interval=args.interval,
            max_fault=args.max_fault,
            drain=args.drain,
            reference=not args.no_reference,
            peer=not args.no_peer_node,
            pg_restart_cmd=args.pg_restart_cmd,
        )
        return await run_chaos(cfg, progress=progress.say)
    if args.command == "load":
        levels = tuple(float(x) for x in args.levels.split(",") if x.strip())
        progress = Progress(args.duration * len(levels), label="load")
        lcfg = LoadConfig(
            target=_target(args),
            rate=args.rate,
            levels=levels,
            duration=args.duration,
            calibrate=args.calibrate,
            base_fraction=args.base_fraction,
            drain=args.drain,
            latency_bound=args.latency_bound,
            reference_sample=args.reference_sample,
            api=args.api,
        )
        return await run_load(lcfg, progress=progress, say=progress.say)
    progress = Progress(args.duration, label="soak")
    scfg = SoakConfig(
        target=_target(args),
        duration=args.duration,
        rate=args.rate,
        interval=args.interval,
        warmup=args.warmup,
        drain=args.drain,
        confidence=args.confidence,
        leak_mb_per_min=args.leak_mb_per_min,
        reference_sample=args.reference_sample,
    )
    return await run_soak(scfg, progress=progress, say=progress.say)


def render(result: dict[str, Any]) -> str:
    """The final table of a run, for people."""
    from stalwart.chaos._report import table

    lat = result.get("latency_s") or {}
    head: list[list[Any]] = [
        ["submitted", result.get("submitted")],
        ["completed", result.get("completed")],
        ["failed", result.get("failed")],
        ["lost", result.get("lost")],
        ["rejected", result.get("rejected")],
        ["duplicate side effects", result.get("duplicate_side_effects")],
        ["results match fault-free", result.get("results_match_fault_free")],
        ["latency p50/p95/p99 s",
         "/".join("-" if lat.get(k) is None else f"{lat[k]:.3f}" for k in ("p50", "p95", "p99"))],
    ]  # fmt: skip
    parts = [table([f"stalwart {result['command']}", "value"], head)]
    if result["command"] == "load":
        rows = [
            [lv["level"], lv["rate"],
             None if lv.get("offered_rate") is None else round(lv["offered_rate"], 3),
             lv["submitted"], lv["completed"], lv["failed"],
             lv["rejected"], lv["lost"], lv["latency_s"]["p50"], lv["latency_s"]["p95"],
             lv["latency_s"]["p99"], lv["max_queue_depth"],
             ",".join(k for k, v in lv["degradations"].items() if v) or "none",
             "yes" if lv["holds"] else "NO"]
            for lv in result["levels"]
        ]  # fmt: skip
        parts.append(table(["level", "rate/s", "sent/s", "submitted", "completed", "failed",
                            "rejected",
                            "lost", "p50 s", "p95 s", "p99 s", "max queue", "degradations",
                            "holds"], rows))  # fmt: skip
    if result["command"] == "chaos":
        rows = [[kind, *(row.get(k, 0) for k in ("applied", "skipped", "error", "detected"))]
                for kind, row in sorted(result["faults_by_kind"].items())]  # fmt: skip
        parts.append(table(["fault", "applied", "skipped", "error", "detected"], rows))
    if result["command"] == "soak":
        rows = [[name, t["slope"], t["low"], t["high"], t["growth"], t["allowed"],
                 "GROWING" if t["growing"] else ("settled" if t.get("settled") else "ok")]
                for name, t in sorted(result["trends"].items())]  # fmt: skip
        parts.append(table(["series", "slope/s", "ci low", "ci high", "growth", "allowed",
                            "verdict"], rows))  # fmt: skip
    if result.get("not_run"):
        parts.append(f"NOT RUN: {result['not_run']}")
    else:
        parts.append("PASSED" if result.get("passed") else "FAILED")
    return "\n\n".join(parts)


def chaos_command(args: argparse.Namespace) -> int | None:
    """Run ``args.command`` if it is one of ours; its exit code, else None."""
    if getattr(args, "command", None) not in COMMANDS:
        return None
    from stalwart.chaos._report import write_json
    from stalwart.cli._tasks import ensure_cwd_importable
    from stalwart.observe import configure_logging

    ensure_cwd_importable()
    level = logging.INFO if args.verbose else logging.WARNING
    configure_logging(level=level, json=False, stream=sys.stderr)
    try:
        result = asyncio.run(_run(args))
    except (ConfigError, StalwartError) as exc:
        print(f"stalwart {args.command}: {exc}", file=sys.stderr)
        return 2
    write_json(args.out, result)
    print(render(result))
    if result.get("not_run"):
        return 3
    return 0 if result.get("passed") else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m stalwart.cli._chaos chaos|load|soak [options]``."""
    parser = argparse.ArgumentParser(prog="stalwart")
    sub = parser.add_subparsers(dest="command", required=True)
    add_chaos_commands(sub)
    code = chaos_command(parser.parse_args(argv))
    return 2 if code is None else code


if __name__ == "__main__":
    raise SystemExit(main())
