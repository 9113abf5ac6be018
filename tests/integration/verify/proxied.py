"""The warehouse example (examples/warehouse), verified with its supplier tool through a
fault proxy instead of its double: written for its doubles, not for this mode. The
profile is the only change; the tool reads ``$SUPPLIER_URL`` when it is called, as it
always did."""

from __future__ import annotations

import dataclasses

from examples.warehouse.app import RESTOCK, order_from_supplier
from examples.warehouse.app import app as warehouse

from stalwart import VerifyProfile

WORKLOAD = "examples.warehouse.app:requests"

# the supplier's upstream: $SUPPLIER_URL in the environment verify runs in
proxied = dataclasses.replace(
    warehouse,
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
_careless_tool = dataclasses.replace(order_from_supplier, retry=None, breaker=None)
careless_tool = dataclasses.replace(
    proxied,
    agents=[
        dataclasses.replace(
            RESTOCK,
            tools=[_careless_tool if t.name == _careless_tool.name else t for t in RESTOCK.tools],
        )
    ],
)
