"""``stalwart models price SPEC...``: where a model's price comes from, and what it is."""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version

from stalwart.errors import ConfigError
from stalwart.llm import PriceTable

__all__ = ["add_model_commands", "model_command"]


def add_model_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser("models", help="model prices")
    verbs = models.add_subparsers(dest="models_command", required=True)
    price = verbs.add_parser(
        "price", help="print the price of models (provider:name), and where it comes from"
    )
    price.add_argument(
        "models", nargs="+", metavar="PROVIDER:MODEL", help="models to price, e.g. openai:gpt-4o"
    )
    price.add_argument(
        "--app", help="module:attribute of an App: its prices and self-hosted providers apply"
    )
    price.add_argument("--json", action="store_true", help="the prices as a JSON list")


def model_command(args: argparse.Namespace) -> int:
    table = PriceTable()
    if args.app:
        from stalwart.agent import App
        from stalwart.cli._tasks import ensure_cwd_importable
        from stalwart.config import load_instance

        ensure_cwd_importable()
        try:
            table = load_instance(args.app, App, "app").price_table()
        except ConfigError as exc:
            print(f"stalwart models price: {exc}", file=sys.stderr)
            return 2
    status = 0
    found: list[dict[str, object]] = []
    if not args.json:
        print(f"{'model':40} {'input $/Mtok':>12} {'cached':>8} {'output $/Mtok':>13}  source")
    for spec in args.models:
        if ":" not in spec:
            print(f"stalwart models price: {spec!r} must look like provider:model", file=sys.stderr)
            status = 2
            continue
        try:
            price, source = table.lookup(spec)
        except ConfigError as exc:
            print(f"stalwart models price: {exc}", file=sys.stderr)
            status = 1
            continue
        cached = "-" if price.cached_input_per_mtok is None else f"{price.cached_input_per_mtok:g}"
        origin = f"genai-prices {version('genai-prices')}" if source == "genai-prices" else source
        found.append({
            "model": spec, "input_per_mtok": price.input_per_mtok,
            "cached_input_per_mtok": price.cached_input_per_mtok,
            "output_per_mtok": price.output_per_mtok, "source": origin,
        })  # fmt: skip
        if args.json:
            continue
        print(
            f"{spec:40} {price.input_per_mtok:>12g} {cached:>8} {price.output_per_mtok:>13g}  "
            f"{origin}"
        )
    if args.json:
        print(json.dumps(found))
    return status
