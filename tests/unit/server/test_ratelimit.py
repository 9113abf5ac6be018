"""The API's per-client rate limit on a fake clock: bursts, refill, Retry-After, the
probes' exemption and a bounded table of clients. Nothing sleeps."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stalwart.errors import ConfigError
from stalwart.server._ratelimit import ClientRateLimiter, RateLimitGate
from stalwart.testing import FakeClock

pytestmark = pytest.mark.timeout(30)


def test_a_burst_then_the_rate_then_a_refill() -> None:
    clock = FakeClock()
    limiter = ClientRateLimiter(2.0, 5, clock=clock)
    assert [limiter.check("10.0.0.1") for _ in range(5)] == [0.0] * 5
    wait = limiter.check("10.0.0.1")
    assert wait == pytest.approx(0.5)  # one request every 0.5 s at 2 per second
    assert limiter.check("10.0.0.2") == 0.0  # another client has its own bucket
    clock.advance(0.5)
    assert limiter.check("10.0.0.1") == 0.0
    assert limiter.check("10.0.0.1") > 0
    clock.advance(10)  # idle: back to a full burst, never more
    assert [limiter.check("10.0.0.1") for _ in range(6)].count(0.0) == 5


def test_the_table_of_clients_is_bounded() -> None:
    clock = FakeClock()
    limiter = ClientRateLimiter(1.0, 2, clock=clock, max_clients=3)
    for client in ("a", "b", "c"):
        limiter.check(client)
        limiter.check(client)  # each one's bucket is empty now
    limiter.check("d")  # past the bound: the least recently seen ("a") is forgotten
    assert len(limiter) == 3
    clock.advance(5)  # everyone refilled: idle buckets are dropped as new clients come
    limiter.check("e")
    assert len(limiter) == 1


@pytest.mark.parametrize(("rate", "burst"), [(0, 10), (-1, 10), (float("inf"), 10), (1, 0)])
def test_bad_limits_are_config_errors(rate: float, burst: int) -> None:
    with pytest.raises(ConfigError, match="rate_limit"):
        ClientRateLimiter(rate, burst)


async def _ok(_request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def test_over_the_limit_is_429_with_retry_after_and_probes_are_exempt() -> None:
    clock = FakeClock()
    limiter = ClientRateLimiter(0.25, 2, clock=clock)  # one request per 4 s
    inner = Starlette(routes=[Route(p, _ok) for p in ("/v1/agents", "/livez", "/readyz")])
    transport = httpx.ASGITransport(app=RateLimitGate(inner, limiter), client=("10.1.2.3", 5))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert [(await c.get("/v1/agents")).status_code for _ in range(2)] == [200, 200]
        over = await c.get("/v1/agents")
        assert over.status_code == 429
        assert over.headers["retry-after"] == "4"
        assert "10.1.2.3" in over.json()["error"] and "retry after 4 s" in over.json()["error"]
        for _ in range(50):  # an orchestrator's probes never count
            assert (await c.get("/livez")).status_code == 200
            assert (await c.get("/readyz")).status_code == 200
        clock.advance(3.5)
        assert (await c.get("/v1/agents")).headers["retry-after"] == "1"  # 0.5 s: at least 1
        clock.advance(0.5)
        assert (await c.get("/v1/agents")).status_code == 200
