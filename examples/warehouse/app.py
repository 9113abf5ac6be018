"""The warehouse app: restock requests, handled by plain Python with three tools.

A ``restock`` agent (a :class:`PythonAgent`, no model) checks the stock of a SKU in the
warehouse's SQLite database, then either reserves units from it (a side effect: a row
in ``reservations``, keyed by the idempotency key) or orders them from the supplier's
HTTP service (a side effect: ``POST /orders`` over a real socket, see ``supplier.py``).

Where things live: the database is ``$WAREHOUSE_DB`` (default ``warehouse.db``), the
supplier ``$SUPPLIER_URL`` (default ``http://127.0.0.1:8765``). Run it::

    python -m examples.warehouse.supplier &          # the supplier service
    stalwart run examples.warehouse.app:app

``stalwart verify examples.warehouse.app:app`` drives it with ``workload`` and, by its
profile, runs the side-effect tools' doubles: verification writes no reservation and
sends the supplier nothing (docs/verify.md).

To verify the supplier call on its real code path instead, with a supplier of your own
running on this machine, declare it behind verify's fault proxy; ``order_from_supplier``
reads ``$SUPPLIER_URL`` at each call, so verify points it at the proxy::

    verify=VerifyProfile(workload=..., tools={"order_from_supplier": "proxy:SUPPLIER_URL"})

(the tests do exactly this: tests/integration/verify/proxied.py).
"""

from __future__ import annotations

import os
import random
import sqlite3
from typing import Any

import httpx

from stalwart import App, PythonAgent, TaskContext, VerifyProfile, tool

SKUS = [f"SKU-{n:03d}" for n in range(1, 41)]


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(os.environ.get("WAREHOUSE_DB", "warehouse.db"), timeout=5)
    conn.executescript(
        "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, on_hand INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS reservations (key TEXT PRIMARY KEY, sku TEXT NOT NULL,"
        " quantity INTEGER NOT NULL);"
    )
    if conn.execute("SELECT count(*) FROM stock").fetchone()[0] == 0:
        rng = random.Random(1)
        with conn:
            conn.executemany(
                "INSERT OR IGNORE INTO stock VALUES (?, ?)",
                [(sku, rng.randint(0, 60)) for sku in SKUS],
            )
    return conn


@tool(scopes=["stock:read"], timeout=5)
def check_stock(sku: str) -> dict[str, Any]:
    """How many units of ``sku`` the warehouse holds."""
    with _db() as conn:
        row = conn.execute("SELECT on_hand FROM stock WHERE sku = ?", (sku,)).fetchone()
    return {"sku": sku, "on_hand": int(row[0]) if row else 0}


def _reserve_double(sku: str, quantity: int, idempotency_key: str) -> dict[str, Any]:
    """What reserve_stock answers, without touching the database (for verification)."""
    return {"sku": sku, "reserved": quantity, "reservation": idempotency_key[-12:]}


@tool(
    scopes=["stock:write"],
    timeout=5,
    side_effect=True,
    deduplicates=True,  # INSERT OR IGNORE on the key: a retry cannot reserve twice
    double=_reserve_double,
)
def reserve_stock(sku: str, quantity: int, idempotency_key: str) -> dict[str, Any]:
    """Reserve ``quantity`` units of ``sku`` from the warehouse's stock."""
    with _db() as conn:
        inserted = conn.execute(
            "INSERT OR IGNORE INTO reservations VALUES (?, ?, ?)",
            (idempotency_key, sku, quantity),
        ).rowcount
        if inserted:
            conn.execute("UPDATE stock SET on_hand = on_hand - ? WHERE sku = ?", (quantity, sku))
    return {"sku": sku, "reserved": quantity, "reservation": idempotency_key[-12:]}


async def _order_double(sku: str, quantity: int, idempotency_key: str) -> dict[str, Any]:
    """What the supplier answers, without calling it (for verification)."""
    return {"order_id": f"PO-double-{idempotency_key[-8:]}", "sku": sku, "quantity": quantity}


@tool(
    scopes=["supplier:write"],
    timeout=10,
    side_effect=True,
    deduplicates=True,  # the supplier keeps the first order per Idempotency-Key
    double=_order_double,
)
async def order_from_supplier(sku: str, quantity: int, idempotency_key: str) -> dict[str, Any]:
    """Order ``quantity`` units of ``sku`` from the supplier."""
    url = os.environ.get("SUPPLIER_URL", "http://127.0.0.1:8765")
    async with httpx.AsyncClient(timeout=8) as client:
        r = await client.post(
            f"{url}/orders",
            json={"sku": sku, "quantity": quantity},
            headers={"Idempotency-Key": idempotency_key},
        )
    r.raise_for_status()
    return dict(r.json())


async def restock(ctx: TaskContext, request: Any) -> dict[str, Any]:
    """Reserve from stock when there is enough, else order from the supplier."""
    sku, quantity = str(request["sku"]), int(request["quantity"])
    stock = await ctx.call_tool("check_stock", {"sku": sku})
    if not stock.ok:
        return {"status": "failed", "reason": f"stock unknown: {stock.error}"}
    on_hand = int(stock.value["on_hand"])
    if on_hand >= quantity:
        done = await ctx.call_tool("reserve_stock", {"sku": sku, "quantity": quantity})
        action = "reserved"
    else:
        done = await ctx.call_tool("order_from_supplier", {"sku": sku, "quantity": quantity})
        action = "ordered"
    if not done.ok:
        return {"status": "failed", "reason": f"{action} failed: {done.error}"}
    return {"status": "completed", "action": action, "sku": sku, "result": done.value}


def requests(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` restock requests (the same for the same seed): the verify workload."""
    rng = random.Random(seed)
    return [{"sku": rng.choice(SKUS), "quantity": rng.randint(1, 30)} for _ in range(count)]


RESTOCK = PythonAgent(
    name="restock",
    fn=restock,
    tools=[check_stock, reserve_stock, order_from_supplier],
    scopes=["stock:read", "stock:write", "supplier:write"],
    max_tasks=8,
)

app = App(
    agents=[RESTOCK],
    store="sqlite:///warehouse-tasks.db",
    # LC-1's latency objective: p99 under 10 s at 1x, 2x and 3x the average rate (without
    # one, verify's default is relative to the 1x p99 and moves with the machine's load)
    verify=VerifyProfile(workload="examples.warehouse.app:requests", latency_p99_s=10.0),
)
