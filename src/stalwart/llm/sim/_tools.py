"""Simulated tool services: e-mail, payments, order lookup, knowledge-base search.

Each side-effecting service counts deliveries per ``Idempotency-Key`` so that
duplicates are measurable. ``payments`` deduplicates on the key as Stripe does
(a repeated key returns the first result and delivers nothing new);
``email`` does not (each request is a new e-mail), which is what makes
at-most-once handling of unknown outcomes necessary.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
from collections import Counter
from typing import Any

__all__ = ["KB_ARTICLES", "ToolServices", "customer_email", "order_for"]

KB_ARTICLES = (
    {
        "id": "kb-1",
        "title": "Refund policy",
        "text": "Refunds are issued within 30 days of "
        "delivery to the original payment method; damaged items are always refundable.",
    },
    {
        "id": "kb-2",
        "title": "Shipping times",
        "text": "Standard shipping takes 3-5 business "
        "days; express shipping takes 1-2 business days.",
    },
    {
        "id": "kb-3",
        "title": "Password reset",
        "text": "Use 'Forgot password' on the sign-in page; the reset link is valid for 1 hour.",
    },
    {
        "id": "kb-4",
        "title": "Order tracking",
        "text": "Each shipped order has a tracking "
        "number, sent by e-mail and shown on the order page.",
    },
    {
        "id": "kb-5",
        "title": "Changing an address",
        "text": "The delivery address can be changed until the order ships.",
    },
)

_STATUSES = ("processing", "shipped", "delivered", "delivered", "cancelled")


def order_for(order_id: int) -> dict[str, Any]:
    """The order with this id, the same every time (seeded by the id)."""
    digest = hashlib.sha256(f"order-{order_id}".encode()).digest()
    return {
        "order_id": order_id,
        "status": _STATUSES[digest[0] % len(_STATUSES)],
        "amount_cents": 1000 + int.from_bytes(digest[1:3], "big") % 20000,
        "items": 1 + digest[3] % 4,
        "customer": f"customer-{digest[4] % 97}",
    }


_FIRST = ("alice", "bob", "carmen", "deepak", "elif", "farah", "goran", "hana", "ivan", "jun")


def customer_email(customer: str) -> str:
    """The e-mail address of the simulated customer ``customer`` (``"customer-35"``, as an
    order names its owner): ``"farah.35@example.com"``."""
    number = int(customer.rsplit("-", 1)[-1])
    return f"{_FIRST[number % len(_FIRST)]}.{number}@example.com"


class ToolServices:
    """State of the simulated services; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.deliveries: dict[str, Counter[str]] = {"email": Counter(), "payments": Counter()}
        self._payment_results: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()

    def send_email(self, key: str | None, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests["email"] += 1
            self.deliveries["email"][key or f"no-key-{self.requests['email']}"] += 1
            n = sum(self.deliveries["email"].values())
        return {"id": f"msg-{n}", "status": "sent", "to": body.get("to")}

    def refunded(self, key: str | None) -> bool:
        """Whether a refund with this key was made (a call with it now is a replay)."""
        with self._lock:
            return key is not None and key in self._payment_results

    def refund(self, key: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """The refund: a repeated key gets the first refund's response unchanged, as an
        idempotent API answers (the HTTP route says so in an ``Idempotent-Replayed``
        header, as Stripe's does), and nothing is paid again."""
        with self._lock:
            self.requests["payments"] += 1
            if key is not None and key in self._payment_results:
                return dict(self._payment_results[key])
            self.deliveries["payments"][key or f"no-key-{self.requests['payments']}"] += 1
            result = {
                # named by its key, as a service that stores refunds by it would: the
                # same task refunds under the same id on any run (LC-1/LC-2 compare runs)
                "refund_id": f"re-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
                if key is not None
                else f"re-{len(self._payment_results) + 1}",
                "status": "succeeded",
                "order_id": body.get("order_id"),
                "amount_cents": body.get("amount_cents"),
            }
            if key is not None:
                self._payment_results[key] = result
            return dict(result)

    def search(self, query: str) -> list[dict[str, Any]]:
        words = {w for w in query.lower().split() if len(w) > 2}
        scored = [
            (sum(w in (a["title"] + " " + a["text"]).lower() for w in words), a)
            for a in KB_ARTICLES
        ]
        return [a for s, a in sorted(scored, key=lambda x: -x[0]) if s > 0][:3]

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "deliveries": {svc: dict(c) for svc, c in self.deliveries.items()},
                "duplicates": {
                    svc: sum(n - 1 for n in c.values() if n > 1)
                    for svc, c in self.deliveries.items()
                },
                "requests": dict(self.requests),
            }


SIM_URL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "stalwart_sim_url", default=None
)
"""Overrides ``STALWART_SIM_URL`` for the current task (several sims in one process)."""


def service_url(path: str = "") -> str:
    """URL of the simulated services in an agent process of an app with ``sim=True``."""
    import os

    base = SIM_URL.get() or os.environ.get("STALWART_SIM_URL")
    if not base:
        from stalwart.errors import ConfigError

        raise ConfigError("STALWART_SIM_URL is not set: run the app with sim=True, or set it")
    return f"{base}{path}"
