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

        def redact(self: Any, text: str, *, policy: Any = None, entities: bool = True) -> str:
            return text

        Redactor.redact = redact  # type: ignore[method-assign]
    else:
        raise ValueError(f"STALWART_TEST_BREAK: unknown mechanism {what!r}")


_break()


# -- apps built to lack a mechanism (no environment variable needed) -----------------------

import asyncio  # noqa: E402 - the section above must run first
import pathlib  # noqa: E402
import tempfile  # noqa: E402

from examples.warehouse.app import check_stock, requests  # noqa: E402

from stalwart.agent import App, LLMAgent, PythonAgent, TaskContext, VerifyProfile  # noqa: E402
from stalwart.tools import tool  # noqa: E402


async def _notice_double(sku: str, idempotency_key: str) -> dict[str, Any]:
    return {"sku": sku, "noticed": True}


@tool(scopes=["notices:send"], timeout=5, side_effect=True, double=_notice_double)
async def send_notice(sku: str, idempotency_key: str) -> dict[str, Any]:
    """Tell the buyers a SKU is being restocked (no dedup at the target)."""
    raise AssertionError("verify must run the double")


def _crashed() -> pathlib.Path:
    """The marker of the one crash (the test points it into its tmp_path)."""
    default = pathlib.Path(tempfile.gettempdir()) / "stalwart-careless-crashed"
    return pathlib.Path(os.environ.get("STALWART_TEST_CARELESS_MARK", str(default)))


async def careless(ctx: TaskContext, request: Any) -> dict[str, Any]:
    """Two missing mechanisms: it dies when a tool is unavailable (once per node, so the
    run stays short), and it delivers its side effect outside the journal, so a task
    resumed after a kill delivers it again with the same key."""
    stock = await ctx.call_tool("check_stock", {"sku": request["sku"]})
    if not stock.ok:
        if not _crashed().exists():
            _crashed().touch()
            os._exit(3)  # no handling: the process dies
        return {"status": "failed", "reason": stock.error}
    await send_notice.invoke({"sku": request["sku"]}, idempotency_key=f"{ctx.task_id}:notice")
    await asyncio.sleep(0.5)  # (plain sleep: not journaled, the kill lands here)
    await ctx.step("done", lambda: None)
    return {"status": "completed"}


careless_app = App(
    agents=[
        PythonAgent(
            name="restock",
            fn=careless,
            tools=[check_stock, send_notice],
            scopes=["stock:read", "notices:send"],
            max_tasks=8,
        )
    ],
    intensity=20,
    verify=VerifyProfile(workload="examples.warehouse.app:requests"),
)


async def _ship_real(parcel: str, idempotency_key: str) -> dict[str, Any]:
    raise AssertionError("verify must not run a side effect declared 'none'")


ship_parcel = tool(scopes=["parcels:write"], timeout=5, side_effect=True, name="ship_parcel")(
    _ship_real
)


async def aloof(ctx: TaskContext, request: Any) -> dict[str, Any]:
    """Uses its tools only for requests the workload never makes."""
    if isinstance(request, dict) and request.get("ship"):
        await ctx.call_tool("ship_parcel", {"parcel": str(request["ship"])})
    return {"status": "completed", "answer": "noted"}


unreachable = App(
    agents=[
        PythonAgent(
            name="desk",
            fn=aloof,
            tools=[check_stock, ship_parcel],
            scopes=["stock:read", "parcels:write"],
        )
    ],
    verify=VerifyProfile(workload="examples.warehouse.app:requests", tools={"ship_parcel": "none"}),
)


@tool(scopes=["x:write"], timeout=5, side_effect=True)
async def wire_money(amount_cents: int, idempotency_key: str) -> dict[str, Any]:
    """Moves money for real (no double, not declared in the profile)."""
    raise AssertionError("preflight must stop before anything runs")


bare = App(
    agents=[
        PythonAgent(name="intake", fn=aloof, tools=[wire_money], scopes=["x:write"]),
        LLMAgent(name="writer", model="main"),
    ],
    models={"main": ["sim:strong"]},
    sim=True,
    intensity=2,
)
"""Lacks every precondition: no workload, a model agent without a budget, an intensity
below verify's kills, a side-effect tool with neither double nor declaration."""

__all__ += ["bare", "careless_app", "requests", "unreachable"]
