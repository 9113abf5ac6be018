from __future__ import annotations

import argparse
import sys

import stalwart

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stalwart", description=stalwart.__doc__)
    parser.add_argument("--version", action="version", version=stalwart.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(stalwart.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
