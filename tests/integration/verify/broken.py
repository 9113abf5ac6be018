"""The helpdesk with one mechanism broken inside its agent processes.

For the tests that show the matching verify item fails. ``STALWART_TEST_BREAK``
is ``<what>:<pid>``: the breakage applies in every process but ``pid`` (the
test's own, which imports this module too and must stay intact): the agents,
which load the app by reference.
"""

from __future__ import annotations

import os
from typing import Any

from examples.helpdesk.app import app

__all__ = ["app"]


def _break() -> None:
    what, _, pid = os.environ.get("STALWART_TEST_BREAK", "").partition(":")
    if not what or not pid.isdigit() or int(pid) == os.getpid():
        return
    if what == "journal":  # steps run, but nothing is written to the journal
        from stalwart.durable._sqlite import SQLiteStore

        async def append(self: Any, lease: Any, entries: Any) -> None:
            return None

        SQLiteStore.append = append  # type: ignore[method-assign]
    elif what == "redactor":  # outputs, errors and log lines pass through unchanged
        from stalwart.guard._redact import Redactor

        def redact(self: Any, text: str, *, policy: Any = None) -> str:
            return text

        Redactor.redact = redact  # type: ignore[method-assign]
    else:
        raise ValueError(f"STALWART_TEST_BREAK: unknown mechanism {what!r}")


_break()
