"""The helpdesk app lives in the package, ``stalwart.demo.app`` (read it there), so that
``stalwart verify``, ``stalwart chaos`` and ``stalwart sim`` work from an installed wheel.
This module names the same objects for the tests, benches and docs that say
``examples.helpdesk.app``: ``stalwart run examples.helpdesk.app:app`` runs the same app.
"""

from stalwart.demo.app import (
    AUTO_REFUND_LIMIT_CENTS,
    BUDGET,
    ORDER,
    REFUND,
    RESOLVER,
    SCENARIO,
    SECURITY,
    TRIAGE,
    app,
    email_check,
    http,
    lookup_order,
    refund,
    refund_check,
    search_kb,
    send_email,
    triage,
)

__all__ = [
    "AUTO_REFUND_LIMIT_CENTS", "BUDGET", "ORDER", "REFUND", "RESOLVER", "SCENARIO",
    "SECURITY", "TRIAGE", "app", "email_check", "http", "lookup_order", "refund",
    "refund_check", "search_kb", "send_email", "triage",
]  # fmt: skip
