"""The simulated model world: models that speak the OpenAI (and Anthropic) wire
format with scripted, deterministic behaviour, fault injection, and simulated
tool services that count deliveries per idempotency key. See ``docs/models.md``.
"""

from stalwart.llm.sim._brain import Rule, Scenario, count_tokens
from stalwart.llm.sim._faults import BODY_FAULTS, Fault
from stalwart.llm.sim._server import MODELS, SimServer, SimWorld, build_app
from stalwart.llm.sim._tools import (
    KB_ARTICLES,
    SIM_URL,
    customer_email,
    order_for,
    service_url,
)

__all__ = [
    "BODY_FAULTS",
    "KB_ARTICLES",
    "MODELS",
    "SIM_URL",
    "Fault",
    "Rule",
    "Scenario",
    "SimServer",
    "SimWorld",
    "build_app",
    "count_tokens",
    "customer_email",
    "order_for",
    "service_url",
]
