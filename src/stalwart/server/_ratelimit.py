"""The HTTP API's request rate limit: a token bucket per client address.

Each client (the connection's peer address) gets a
:class:`stalwart.resilience.TokenBucket` of ``burst`` requests refilled at
``rate`` per second, on the injected clock. A request that finds its bucket empty
is not queued: it gets 429 with ``Retry-After`` (whole seconds until one request
would be granted) at once -- an API must not hold connections open for a client
that is over its limit. ``/livez`` and ``/readyz`` are never limited: an
orchestrator must not restart a node because of its own probes.

The table of buckets is bounded (``max_clients``, 10 000): a bucket that has
refilled completely is the same as a new one, so idle clients are forgotten as
new ones arrive; past the bound the least recently seen client is forgotten (it
starts again with a full burst -- a client would need 10 000 addresses to use that).
Behind a reverse proxy every request comes from the proxy's address: the limit is
then the proxy's, and ``X-Forwarded-For`` is not trusted (any client can write it).
"""

from __future__ import annotations

from collections import OrderedDict

from starlette.types import ASGIApp, Receive, Scope, Send

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.resilience import TokenBucket
from stalwart.server._http import retry_after_header, send_json

__all__ = ["ClientRateLimiter", "RateLimitGate"]

NEVER_LIMITED = frozenset({"/livez", "/readyz"})


class ClientRateLimiter:
    """``rate`` requests per second per client, bursting to ``burst`` (see the module
    docstring). Used from the event loop only: no lock around the table."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_clients: int = 10_000,
    ) -> None:
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients}")
        self.rate = float(rate)
        self.burst = burst
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        TokenBucket(rate, capacity=burst, clock=clock)  # bad settings fail here, not per request

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, client: str) -> float:
        """Take one request of ``client``'s allowance: 0.0 when granted, else the seconds
        until one would be (the request must then be refused)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            self._make_room()
            bucket = TokenBucket(
                self.rate, capacity=self.burst, clock=self.clock, name="api_rate_limit"
            )
            self._buckets[client] = bucket
        else:
            self._buckets.move_to_end(client)
        if bucket.try_acquire(1.0):
            return 0.0
        return max(bucket.wait_time(1.0), 1e-3)

    def _make_room(self) -> None:
        buckets = self._buckets
        while buckets:  # least recently seen first: forget those that are full again
            oldest = next(iter(buckets.values()))
            if oldest.available < oldest.capacity:
                break
            buckets.popitem(last=False)
        while len(buckets) >= self.max_clients:
            buckets.popitem(last=False)


class RateLimitGate:
    """ASGI middleware: 429 with ``Retry-After`` for a client over its limit."""

    def __init__(self, app: ASGIApp, limiter: ClientRateLimiter) -> None:
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_LIMITED:
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        client = str(peer[0]) if peer else "unknown"
        wait = self.limiter.check(client)
        if wait > 0:
            limiter = self.limiter
            after = retry_after_header(wait)
            await send_json(
                send,
                429,
                f"too many requests from {client}: the limit is {limiter.rate:g} per second "
                f"with bursts of {limiter.burst}; retry after {after} s",
                {"Retry-After": after},
            )
            return
        await self.app(scope, receive, send)
