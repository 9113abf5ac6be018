"""The warehouse example (examples/warehouse), verified with its supplier tool through a
fault proxy instead of its double: written for its doubles, not for this mode. The
profile is the change that matters; the tool reads ``$SUPPLIER_URL`` when it is called,
as it always did.

The supplier tool's timeout (10 s) and its breaker's ``wait_duration_in_open`` (30 s) are
also shortened, to 5 s each, as an app's owner may set them: EH-2, EH-3 and GD-3 wait
on them (the fault-proxy test took 155 s, the suite's longest), and verify must read the
app's own values, not the defaults (the tests assert what it read)."""

from __future__ import annotations

import dataclasses
from typing import Any

from examples.warehouse.app import RESTOCK, order_from_supplier
from examples.warehouse.app import app as warehouse

from stalwart import App, VerifyProfile
from stalwart.resilience import BreakerConfig

WORKLOAD = "examples.warehouse.app:requests"
SUPPLIER_TIMEOUT_S = 5.0
"""The supplier tool's timeout here (the example's is 10 s; 5 s is the least allowed)."""
SUPPLIER_OPEN_S = 5.0
"""Its breaker's wait in the open state here (the default is 30 s)."""


def _with_supplier(app: App, **changes: Any) -> App:
    """``app`` with its supplier tool (order_from_supplier) changed as ``changes`` say."""
    supplier = dataclasses.replace(order_from_supplier, **changes)
    tools = [supplier if t.name == supplier.name else t for t in RESTOCK.tools]
    return dataclasses.replace(app, agents=[dataclasses.replace(RESTOCK, tools=tools)])


# the supplier's upstream: $SUPPLIER_URL in the environment verify runs in
proxied = dataclasses.replace(
    _with_supplier(
        warehouse,
        timeout=SUPPLIER_TIMEOUT_S,
        breaker=BreakerConfig(wait_duration_in_open=SUPPLIER_OPEN_S),
    ),
    verify=VerifyProfile(workload=WORKLOAD, tools={"order_from_supplier": "proxy:SUPPLIER_URL"}),
)

# the side-effect tools declared as ones verify cannot fault (neither their doubles nor
# a fault proxy: their calls are refused, and check_stock has no double)
unfaultable = dataclasses.replace(
    warehouse,
    verify=VerifyProfile(
        workload=WORKLOAD, tools={"order_from_supplier": "none", "reserve_stock": "none"}
    ),
)

# a proxy upstream that is not on this machine (preflight refuses it)
remote = dataclasses.replace(
    warehouse,
    verify=VerifyProfile(
        workload=WORKLOAD,
        tools={"order_from_supplier": "proxy:SUPPLIER_URL=http://supplier.example.com:8765"},
    ),
)

# the proxied tool with neither retries nor a circuit breaker: EH-1 must find it gives up
# at the first reset, EH-2 that it keeps calling a dead upstream
careless_tool = _with_supplier(proxied, retry=None, breaker=None)
