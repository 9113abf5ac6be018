from __future__ import annotations

from collections.abc import Iterator

import pytest

from stalwart.llm import Price, PriceTable, Provider
from stalwart.llm.sim import Rule, Scenario, SimServer
from stalwart.resilience import BreakerConfig, RetryPolicy

HELPDESK = Scenario(
    (
        Rule(
            match=r"order #?(?P<order_id>\d+)",
            call="lookup_order",
            arguments={"order_id": "{order_id}"},
        ),
        Rule(
            match=r"order #?(?P<order_id>\d+)",
            requires=("lookup_order",),
            answer="Order {order_id}: {result:lookup_order}",
        ),
    )
)

# fast, deterministic policies for tests: small backoff, a breaker that trips quickly
FAST_RETRY = RetryPolicy(max_attempts=3, base=0.01, cap=0.05)
FAST_BREAKER = BreakerConfig(
    window_size=4,
    minimum_calls=2,
    failure_rate_threshold=50.0,
    wait_duration_in_open=0.3,
    permitted_calls_in_half_open=1,
)
PRICES = PriceTable({"simA:strong": Price(3.0, 15.0), "simA:weak": Price(0.8, 4.0)})


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(scenario=HELPDESK) as server:
        yield server


def providers(sim: SimServer, key: str | None = "test-key") -> dict[str, Provider]:
    return {
        "sim": Provider(sim.base_url, api_key=key),
        "simA": Provider(sim.url, api_key=key, wire="anthropic"),
    }
