"""What a tool call does while ``stalwart verify`` runs the app (and only then).

Verify sets ``STALWART_VERIFY_DIR`` for the node it starts (agent processes inherit
it). With it set, each call of a tool:

- fails as unavailable (connection refused) while the file ``<dir>/down/<tool>``
  exists: verify's switch for taking a tool down (GD-2), whatever it talks to (each
  refused call adds a line to ``<dir>/down/<tool>.hits``: the proof it was exercised);
- runs the tool's own function when the tool is named in ``STALWART_VERIFY_PROXIED``
  (the profile put it behind a fault proxy: it reaches its real upstream through the
  proxy, which verify faults; its double, if any, does not run);
- runs the tool's double (``@tool(double=fn)``) instead of its function, when it has one;
- is refused (an error result, nothing sent) when the tool is a side-effect tool named
  in ``STALWART_VERIFY_BLOCKED``: one with neither a double nor a simulated or proxied
  target, unless the user passed ``--allow-real-side-effects``;
- for a side-effect tool, appends the call's idempotency key to
  ``<dir>/calls/<tool>.keys`` once it returned: verify counts deliveries per key
  (SM-4, LC-2) for every side-effect tool, doubles and real targets alike.

Without the variable nothing changes: the tool's own function runs.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any

__all__ = ["BLOCKED_ENV", "PROXIED_ENV", "VERIFY_DIR_ENV", "delivered", "route"]

VERIFY_DIR_ENV = "STALWART_VERIFY_DIR"
BLOCKED_ENV = "STALWART_VERIFY_BLOCKED"
PROXIED_ENV = "STALWART_VERIFY_PROXIED"


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
        return double
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
