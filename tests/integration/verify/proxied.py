"""The warehouse example (examples/warehouse), verified with its supplier tool through a
fault proxy instead of its double: written for its doubles, not for this mode. The
profile is the only change; the tool reads ``$SUPPLIER_URL`` when it is called, as it
always did."""

from __future__ import annotations

import dataclasses

from examples.warehouse.app import app as warehouse

from stalwart import VerifyProfile

WORKLOAD = "examples.warehouse.app:requests"

# the supplier's upstream: $SUPPLIER_URL in the environment verify runs in
proxied = dataclasses.replace(
    warehouse,
    verify=VerifyProfile(workload=WORKLOAD, tools={"order_from_supplier": "proxy:SUPPLIER_URL"}),
)

# the same tool declared as one verify cannot fault
unfaultable = dataclasses.replace(
    warehouse,
    verify=VerifyProfile(workload=WORKLOAD, tools={"order_from_supplier": "none"}),
)

# a proxy upstream that is not on this machine (preflight refuses it)
remote = dataclasses.replace(
    warehouse,
    verify=VerifyProfile(
        workload=WORKLOAD,
        tools={"order_from_supplier": "proxy:SUPPLIER_URL=http://supplier.example.com:8765"},
    ),
)
