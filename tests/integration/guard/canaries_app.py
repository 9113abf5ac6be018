"""An app whose agent handles four canaries in every careless way (for test_canaries.py).

It resolves a secret from the vault and returns it from a journaled step, prints it,
writes it to ``sys.stderr`` and straight to file descriptors 1 and 2, logs a card number,
a name with an address and vendor tokens, and ends with a result (or an error) that
carries all of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from stalwart.agent import App, PythonAgent, TaskContext
from stalwart.agent._setup import secret_resolver
from stalwart.observe import get_logger

VAULT_SECRET = "vlt-Qm7rTz2Lw9Xc4Np8Hd"
"""Stored in the vault as ``canary-key``: no pattern matches it, only knowing it does."""
CARD = "4539 1488 0343 6467"
NAME_ADDRESS = "Margaret Okonkwo-Lindqvist, 1742 Wrenfield Terrace, Duluth"
SLACK = "xoxb-2048163541-5123987456-QhT7rLm2XcV9pKs4DfG8yZwA"
DISCORD = "MTA4NzQ1OTg2NzU0MzIxMDk4.GZk3Qx.Vb7mR2tLc9XwP4nKs8DfH1jY6eAq0uIo5zTg"
LICENCE = "X8842107"
"""A driver's licence number: found after its name in text, and by its field's name in data."""
STRICT = (VAULT_SECRET, CARD, CARD.replace(" ", ""), SLACK, LICENCE)
"""Canaries every sink must be free of today."""
PENDING = (NAME_ADDRESS, "Okonkwo-Lindqvist", "Wrenfield Terrace", DISCORD)
"""Canaries that need the redactor's name/address tier and vendor-token formats (issue 16,
another branch): checked only when ``STALWART_CANARY_STRICT=1`` until those land."""

_log = get_logger("canaries.app")


async def leaky(ctx: TaskContext, task_input: Any) -> Any:
    key = secret_resolver().resolve("secret://canary-key")
    everything = (
        f"key={key} card={CARD} customer={NAME_ADDRESS} slack={SLACK} discord={DISCORD} "
        f"driver's license: {LICENCE}"
    )
    # a resolved secret returned from a journaled step (the journal must keep a reference)
    header = await ctx.step("build_header", lambda: {"header": f"Key {key}", "raw": key})
    assert header["raw"] == key  # the step itself still gets the value
    print("debug:", everything)  # a plain print in agent code
    print("partial line without newline, then:", key, end="")
    print(" ...", CARD)
    sys.stderr.write(f"stderr: {everything}\n")
    os.write(1, f"fd1: {everything}\n".encode())  # past sys.stdout entirely
    os.write(2, f"fd2: {everything}\n".encode())
    subprocess.run(["echo", f"sub: {everything}"], check=True, timeout=10)  # inherits fd 1
    _log.info("careless_line", detail=everything, card=CARD)
    await ctx.step(
        "customer",
        lambda: {"who": NAME_ADDRESS, "card": CARD, "token": SLACK, "drivers_license": LICENCE},
    )
    if isinstance(task_input, dict) and task_input.get("fail"):
        raise RuntimeError(f"could not charge: {everything}")
    return {"summary": everything, "header": header["header"]}


def workload(count: int, seed: int) -> list[Any]:
    """Task inputs for ``stalwart verify`` (every one pushes all four canaries)."""
    return [{"ok": True, "n": seed + i} for i in range(count)]


app = App(
    agents=[PythonAgent(name="leaky", fn=leaky, restart="transient")],
    models={},
    workload="tests.integration.guard.canaries_app:workload",
)
