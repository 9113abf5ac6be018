"""What every bench records about its run: the checked-out commit."""

from __future__ import annotations

import pathlib
import subprocess

__all__ = ["commit"]

ROOT = pathlib.Path(__file__).resolve().parents[1]


def commit() -> str:
    """The checked-out commit (short), ``+dirty`` when tracked files differ from it;
    ``unknown`` outside a git checkout. Results (``bench/results/``) do not count: a
    bench that ran before this one changed them, not the code measured."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
