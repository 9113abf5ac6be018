"""What a tool call does while ``stalwart verify`` runs the app (and only then).

Verify sets ``STALWART_VERIFY_DIR`` for the node it starts (agent processes inherit
it). With it set, each call of a tool:

- fails as unavailable (connection refused) while the file ``<dir>/down/<tool>``
  exists: verify's switch for taking a tool down (GD-2), whatever it talks to (each
  refused call adds a line to ``<dir>/down/<tool>.hits``: the proof it was exercised);
- runs the tool's own function when the tool is named in ``STALWART_VERIFY_PROXIED``
  (the profile put it behind a fault proxy: it reaches its real upstream through the
  proxy, which verify faults; its double, if any, does not run);
- runs the tool's double (``@tool(double=fn)``) instead of its function, when it has one,
  appending ``<mode> <time>`` to ``<dir>/fault/<tool>.hits`` for each attempt (``ok``
  unfaulted): verify counts a double's attempts as the fault proxy counts connections.
  While the file ``<dir>/fault/<tool>`` holds a mode, the attempt meets that fault
  instead, as a service behind the double would fail: ``reset`` raises
  ``ConnectionResetError`` (a retryable network error), ``hang`` never answers (the
  tool's timeout ends it). EH-1, EH-2, EH-3 and GD-3 fault tools with doubles this way;
- is refused (an error result, nothing sent) when the tool is a side-effect tool named
  in ``STALWART_VERIFY_BLOCKED``: one with neither a double nor a simulated or proxied
  target, unless the user passed ``--allow-real-side-effects``;
- for a side-effect tool, appends the call's idempotency key to
  ``<dir>/calls/<tool>.keys`` once it returned: verify counts deliveries per key
  (SM-4, LC-2) for every side-effect tool, doubles and real targets alike.

Without the variable nothing changes: the tool's own function runs.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "BLOCKED_ENV",
    "FAULTS",
    "PROXIED_ENV",
    "VERIFY_DIR_ENV",
    "delivered",
    "route",
    "verifying",
]

VERIFY_DIR_ENV = "STALWART_VERIFY_DIR"
BLOCKED_ENV = "STALWART_VERIFY_BLOCKED"
PROXIED_ENV = "STALWART_VERIFY_PROXIED"
FAULTS = ("reset", "hang")
"""The faults verify can give a double (the contents of ``<dir>/fault/<tool>``)."""


def verifying() -> bool:
    """Whether ``stalwart verify`` runs this process's app (its directory is set)."""
    return bool(os.environ.get(VERIFY_DIR_ENV))


async def _hang(**_kwargs: Any) -> Any:
    """An attempt that never answers: the tool's timeout cancels it."""
    await asyncio.sleep(3600)


def _double(root: str, name: str, double: Callable[..., Any]) -> Callable[..., Any]:
    """The double, or the fault verify set for it; each attempt recorded."""
    faults = pathlib.Path(root) / "fault"
    try:
        mode = (faults / name).read_text().strip()
    except FileNotFoundError:
        mode = ""
    faults.mkdir(parents=True, exist_ok=True)
    with open(faults / f"{name}.hits", "a") as f:  # one short line: an atomic O_APPEND write
        f.write(f"{mode or 'ok'} {time.time():.6f}\n")
    if mode == "reset":
        raise ConnectionResetError(f"{name}: connection reset (stalwart verify faults its double)")
    if mode == "hang":
        return _hang
    return double


def route(name: str, fn: Callable[..., Any], double: Callable[..., Any] | None,
          side_effect: bool) -> Callable[..., Any]:  # fmt: skip
    """The function a call of tool ``name`` runs now (raises when verify holds it)."""
    root = os.environ.get(VERIFY_DIR_ENV)
    if not root:
        return fn
    down = pathlib.Path(root) / "down"
    if (down / name).exists():
        with open(down / f"{name}.hits", "a") as f:  # verify counts the calls it refused
            f.write("1\n")
        raise ConnectionRefusedError(f"{name} is down (stalwart verify took it down)")
    if name in os.environ.get(PROXIED_ENV, "").split(","):
        return fn  # its upstream is behind verify's fault proxy: the real code path runs
    if double is not None:
        return _double(root, name, double)
    if side_effect and name in os.environ.get(BLOCKED_ENV, "").split(","):
        raise PermissionError(
            f"{name} is a side-effect tool with no double: stalwart verify does not let it "
            "reach its real target (give it @tool(double=...), or pass "
            "--allow-real-side-effects)"
        )
    return fn


def delivered(name: str, key: str | None) -> None:
    """Record that side-effect tool ``name`` delivered the call with ``key``."""
    root = os.environ.get(VERIFY_DIR_ENV)
    if not root or not key:
        return
    calls = pathlib.Path(root) / "calls"
    calls.mkdir(parents=True, exist_ok=True)
    with open(calls / f"{name}.keys", "a") as f:  # one short line: an atomic O_APPEND write
        f.write(key + "\n")
