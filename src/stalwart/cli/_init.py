"""``stalwart init NAME``: a new project a user starts from, written from package data.

The templates live in ``stalwart/cli/templates/project`` (shipped in the wheel); each
``*.tmpl`` file is written without the suffix, ``{{name}}``, ``{{slug}}`` (the name as a
Kubernetes/Docker name) and ``{{version}}`` (this stalwart's) filled in. ``gitignore`` and
``dockerignore`` become dot files. An existing non-empty folder is never written into.
"""

from __future__ import annotations

import argparse
import importlib.resources
import re
import sys
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import stalwart
from stalwart.errors import ConfigError

__all__ = ["add_init_command", "init_command", "init_project"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
_DOT_FILES = {"gitignore", "dockerignore"}


def add_init_command(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="start a project: an agent with a tool, its tests, a Dockerfile, deploy files",
        description="Write a new project into the folder NAME (created; it must not exist "
        "or be empty): app.py with one LLM agent and one tool on the simulated model, the "
        "same app as app.toml, its verification profile, tests/ using stalwart.testing, a "
        "Dockerfile, and deploy/ (a Kubernetes Deployment and values for stalwart's Helm chart). "
        "`stalwart run app:app` and `stalwart verify app:app --plan` work in it at once.",
    )
    init.add_argument("name", help="the project folder to create (its last part names the project)")


def _templates() -> Traversable:
    return importlib.resources.files("stalwart.cli").joinpath("templates", "project")


def _walk(folder: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Every template under ``folder``: (relative path parts, text), in a stable order."""
    found: list[tuple[tuple[str, ...], str]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found.extend(_walk(entry, (*prefix, entry.name)))
        elif entry.name.endswith(".tmpl"):
            found.append(((*prefix, entry.name), entry.read_text(encoding="utf-8")))
    return found


def init_project(target: Path) -> list[Path]:
    """Write the project into ``target``; return the files written (relative to it).

    Raises :class:`ConfigError` when the name is not usable or ``target`` exists and is
    not an empty folder (nothing is written then)."""
    name = target.name
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a usable project name: start with a letter, then letters, "
            "digits, '-' or '_' (at most 63 characters)"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"{str(target)!r} already exists and is not an empty folder: nothing was written "
            "(choose another name, or empty it first)"
        )
    values = {
        "{{name}}": name,
        "{{slug}}": name.lower().replace("_", "-"),
        "{{version}}": stalwart.__version__,
    }
    written: list[Path] = []
    for parts, template in _walk(_templates()):
        *folders, file = parts
        text = template
        file = file.removesuffix(".tmpl")
        if file in _DOT_FILES:
            file = "." + file
        for key, value in values.items():
            text = text.replace(key, value)
        relative = Path(*folders, file)
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(relative)
    return written


def init_command(args: argparse.Namespace) -> int:
    """Exit 0 with the project written, 2 (and nothing written) when it cannot be."""
    target = Path(args.name)
    try:
        written = init_project(target)
    except (ConfigError, OSError) as exc:
        print(f"stalwart init: {exc}", file=sys.stderr)
        return 2
    print(f"stalwart init: wrote {len(written)} files into {target}/")
    for relative in written:
        print(f"  {relative}")
    print(
        f"\nnext:\n  cd {target}\n"
        "  stalwart run app:app                 # agents, store, dashboard, API (Ctrl-C stops)\n"
        '  stalwart task submit assistant \'{"text": "Where is my order #1042?"}\' '
        "--app app:app --wait 30\n"
        "  python -m pytest tests               # its tests\n"
        "  stalwart verify app:app --plan       # the readiness checks it would run"
    )
    return 0
