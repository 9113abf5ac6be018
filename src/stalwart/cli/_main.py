from __future__ import annotations

import argparse
import asyncio
import sys

import stalwart
from stalwart.cli._banner import Banner, log_format
from stalwart.cli._chaos import add_chaos_commands, chaos_command
from stalwart.cli._children import add_children_commands, children_command
from stalwart.cli._init import add_init_command, init_command
from stalwart.cli._models import add_model_commands, model_command
from stalwart.cli._secrets import add_secret_commands, secret_command
from stalwart.cli._store import add_store_commands, store_command
from stalwart.cli._tasks import (
    add_task_commands,
    ensure_cwd_importable,
    is_app_ref,
    task_command,
)
from stalwart.cli._verify import add_verify_command, verify_command
from stalwart.config import load_instance, load_ref
from stalwart.errors import ConfigError
from stalwart.node import Node, app_node
from stalwart.observe import configure_logging
from stalwart.runtime import SupervisorSpec
from stalwart.server._breakers_cli import add_breaker_commands, breaker_command
from stalwart.server._cli import add_commands, add_run_flags, run_command, service_from_args

__all__ = ["build_parser", "load_app", "main"]


DESCRIPTION = (
    "stalwart runs AI agents in production: each agent in its own supervised process, every\n"
    "step journaled so a killed task resumes where it stopped, every model and tool call\n"
    "behind deadlines, retries, breakers, budgets and a guard -- and `stalwart verify`\n"
    "proves it against the production-readiness checklist."
)
EPILOG = (
    "start here:\n"
    "  stalwart init myapp && cd myapp   a new project on the simulated model\n"
    "  stalwart run app:app              run it (dashboard and HTTP API included)\n"
    "  stalwart verify app:app --plan    what the readiness checks will do\n"
    "  stalwart demo                     a supervision tree surviving a SIGKILL\n"
    "\n"
    "`stalwart COMMAND --help` describes each command."
)


def load_app(ref: str) -> SupervisorSpec:
    """Load ``module:attr``: a SupervisorSpec, or a callable returning one."""
    return load_instance(ref, SupervisorSpec, "app")


def _limit(text: str) -> int:
    """An admission limit flag: a non-negative int (0 means no limit)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative (0 means no limit)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``stalwart`` parser with every command (docs/reference/cli.md is generated from it)."""
    parser = argparse.ArgumentParser(
        prog="stalwart",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=stalwart.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    add_init_command(sub)
    demo = sub.add_parser(
        "demo",
        help="a supervision tree at work, one agent SIGKILLed mid-run (--helpdesk: the "
        "helpdesk app's tickets, a kill, then stalwart verify)",
    )
    demo.add_argument("--agents", type=int, default=6, help="worker agents (default 6)")
    demo.add_argument("--duration", type=float, default=8.0, help="seconds (default 8)")
    demo.add_argument("--kill-at", type=float, default=3.0, help="SIGKILL one at (default 3 s)")
    demo.add_argument(
        "--helpdesk",
        action="store_true",
        help="instead: tickets through the helpdesk app (stalwart.demo.app), its resolver "
        "SIGKILLed midway, then the readiness report (`make demo`)",
    )
    demo.add_argument("--tickets", type=int, default=50, help="--helpdesk: tickets (50)")
    demo.add_argument(
        "--no-verify", action="store_true", help="--helpdesk: skip the readiness report"
    )
    demo.add_argument(
        "--verify-out", default="readiness", help="--helpdesk: report directory (readiness/)"
    )
    sim = sub.add_parser("sim", help="serve the simulated models and tool services")
    sim.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    sim.add_argument(
        "--scenario", help="a JSON file ({'rules': [...]}) or module:attribute naming a Scenario"
    )
    run = sub.add_parser("run", help="run an app's supervision tree until stopped")
    run.add_argument(
        "app",
        help="module:attribute naming an App or a SupervisorSpec (or a factory), "
        "or an app .toml file",
    )
    run.add_argument("--store", help="store URL for an App (default: the App's own)")
    run.add_argument(
        "--max-pending", type=_limit, metavar="N",
        help="admission: tasks that may wait per agent, then 429 (default: the App's, "
        "1000; 0 = no limit)",
    )  # fmt: skip
    run.add_argument(
        "--max-pending-node", type=_limit, metavar="N",
        help="admission: tasks that may wait across every agent (default: the App's, "
        "10000; 0 = no limit)",
    )  # fmt: skip
    add_run_flags(run)
    add_commands(sub)
    add_task_commands(sub)
    add_verify_command(sub)
    add_secret_commands(sub)
    add_chaos_commands(sub)
    add_breaker_commands(sub)
    add_model_commands(sub)
    add_children_commands(sub)
    add_store_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    breaker_code = breaker_command(args)
    if breaker_code is not None:
        return breaker_code
    observe_code = run_command(args)
    if observe_code is not None:
        return observe_code
    chaos_code = chaos_command(args)
    if chaos_code is not None:
        return chaos_code
    children_code = children_command(args)
    if children_code is not None:
        return children_code
    store_code = store_command(args)
    if store_code is not None:
        return store_code

    if args.command == "version":
        print(stalwart.__version__)
        return 0
    if args.command == "demo" and args.helpdesk:
        from stalwart.demo.run import helpdesk_demo

        return helpdesk_demo(
            tickets=args.tickets, verify_out=None if args.no_verify else args.verify_out
        )
    if args.command == "demo":
        from stalwart.cli._demo import run_demo

        configure_logging(json=False)
        return asyncio.run(
            run_demo(agents=args.agents, duration=args.duration, kill_at=args.kill_at)
        )
    if args.command == "init":
        return init_command(args)
    if args.command == "task":
        return task_command(args)
    if args.command == "verify":
        return verify_command(args)
    if args.command == "models":
        return model_command(args)
    if args.command in ("secrets", "approvals"):
        return secret_command(args)
    if args.command == "sim":
        return _sim(args.host, args.port, args.scenario)
    if args.command == "run":
        return _run(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _run(args: argparse.Namespace) -> int:
    try:
        console = log_format(args.log_format, sys.stderr) == "console"
    except ConfigError as exc:
        print(f"stalwart run: {exc}", file=sys.stderr)
        return 2
    configure_logging(json=not console)
    ensure_cwd_importable()
    try:
        service = service_from_args(args)
        extra = (service,) if service else ()
        if is_app_ref(args.app):
            node, app_service = app_node(args.app, store=args.store, services=extra)
            if args.max_pending is not None:
                app_service.max_pending = args.max_pending or None
            if args.max_pending_node is not None:
                app_service.max_pending_node = args.max_pending_node or None
            agents = [a.name for a in app_service.app.agents]
            store: str | None = app_service.store_url
            sim = app_service.sim_url or (
                f"http://127.0.0.1:{app_service.sim_port}" if app_service.sim_port else None
            )
        else:
            root = load_app(args.app)
            module = args.app.partition(":")[0]
            node = Node(root, preload=[module], services=extra)
            agents, store, sim = [c.id for c in root.children], None, None
    except ConfigError as exc:
        print(f"stalwart run: {exc}", file=sys.stderr)
        return 2
    configure_logging(json=not console, node=node.id)
    if console and sys.stderr.isatty():
        banner = Banner(args.app, agents, store, service, sim, sys.stderr)
        node.events.subscribe(banner.show)
    # every line the node writes (its own, its agents', their captured output) passes
    # the redactor, which knows the local vault's values: an app or a bare supervisor
    from stalwart.guard import install_redactor, learn_vault_secrets

    install_redactor()
    learn_vault_secrets()
    return asyncio.run(node.run())


def _sim(host: str, port: int, scenario_path: str | None) -> int:
    import json
    import signal
    import threading

    from stalwart.llm.sim import Scenario, SimServer

    try:
        scenario = None
        if scenario_path and not scenario_path.endswith(".json") and ":" in scenario_path:
            ensure_cwd_importable()
            scenario = load_ref(scenario_path, "scenario")
            if not isinstance(scenario, Scenario):
                raise ConfigError(f"{scenario_path!r} is not a stalwart.llm.sim.Scenario")
        elif scenario_path:
            with open(scenario_path) as f:
                scenario = Scenario.from_json(json.load(f))
    except (OSError, ValueError, ConfigError, ImportError) as exc:
        print(f"stalwart sim: cannot load scenario {scenario_path!r}: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with SimServer(host=host, port=port, scenario=scenario) as server:
        print(
            f"stalwart sim: models at {server.base_url} (strong, weak, gullible); "
            f"tools at {server.url}/tools; faults at {server.url}/_sim/faults",
            flush=True,
        )
        while not stop.wait(3600):  # woken by SIGTERM/SIGINT
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
