from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from typing import Any

import stalwart
from stalwart.errors import ConfigError
from stalwart.node import Node
from stalwart.observe import configure_logging
from stalwart.runtime import SupervisorSpec

__all__ = ["load_app", "main"]


def load_app(ref: str) -> SupervisorSpec:
    """Load ``module:attr``: a SupervisorSpec, or a callable returning one."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"APP must look like 'package.module:attribute', got {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import app module {module_name!r}: {exc}") from exc
    obj: Any = getattr(module, attr, None)
    if obj is None:
        raise ConfigError(f"app module {module_name!r} has no attribute {attr!r}")
    if callable(obj) and not isinstance(obj, SupervisorSpec):
        obj = obj()
    if not isinstance(obj, SupervisorSpec):
        raise ConfigError(f"{ref!r} is a {type(obj).__name__}, not a SupervisorSpec")
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stalwart", description=stalwart.__doc__)
    parser.add_argument("--version", action="version", version=stalwart.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    demo = sub.add_parser("demo", help="a supervision tree at work, one agent SIGKILLed mid-run")
    demo.add_argument("--agents", type=int, default=6)
    demo.add_argument("--duration", type=float, default=8.0)
    demo.add_argument("--kill-at", type=float, default=3.0)
    run = sub.add_parser("run", help="run an app's supervision tree until stopped")
    run.add_argument("app", help="module:attribute naming a SupervisorSpec (or a factory)")
    args = parser.parse_args(argv)

    if args.command == "version":
        print(stalwart.__version__)
        return 0
    if args.command == "demo":
        from stalwart.cli._demo import run_demo

        configure_logging(json=False)
        return asyncio.run(
            run_demo(agents=args.agents, duration=args.duration, kill_at=args.kill_at)
        )
    if args.command == "run":
        configure_logging()
        try:
            root = load_app(args.app)
        except ConfigError as exc:
            print(f"stalwart run: {exc}", file=sys.stderr)
            return 2
        module = args.app.partition(":")[0]
        return asyncio.run(Node(root, preload=[module]).run())
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
