"""Output of the runs: the progress line, the final table, the JSON file."""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from stalwart.chaos._driver import Driver

__all__ = ["Progress", "table", "write_json"]


class Progress:
    """A progress bar on a terminal (redrawn in place), a line every 5 s otherwise."""

    def __init__(self, total_s: float, *, stream: TextIO | None = None, label: str = "") -> None:
        self.total = max(total_s, 1e-9)
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def say(self, message: str) -> None:
        self.stream.write(("\r\033[K" if self.tty else "") + message + "\n")
        self.stream.flush()

    def __call__(self, driver: Driver) -> None:
        now = time.monotonic()
        if not self.tty and now - self._last < 5.0:
            return
        self._last = now
        done = min(1.0, (now - self.started) / self.total)
        width = 24
        bar = "#" * int(done * width) + "-" * (width - int(done * width))
        line = (
            f"{self.label} [{bar}] {done * 100:3.0f}%  finished {driver.finished}  "
            f"queue {len(driver.outstanding)}"
        )
        self.stream.write(("\r\033[K" + line) if self.tty else line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, columns right-aligned (numbers) or left-aligned (the first)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def write_json(path: str | None, result: dict[str, Any]) -> None:
    """Write ``result`` to ``path`` (atomically: a temp file, then rename)."""
    if not path:
        return
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str, sort_keys=False) + "\n")
    tmp.replace(target)
