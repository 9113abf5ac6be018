"""Is a model chain usable right now? What ``/readyz`` asks of every chain of an app.

A model is *unusable* while its circuit breaker is open (the agents' breakers,
shipped to the node as metrics) or while its endpoint refuses connections (a
TCP connect to the provider's host and port, bounded by ``timeout``: no request
is made, nothing is paid, no key is needed, so it answers within the check's
deadline even while nothing calls the model). A chain with every model unusable
is *degraded*: the node is alive and keeps its tasks (they wait in their retries
and fallbacks, or fail and are journaled), but cannot make progress on model
calls. The check then names each model and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

from stalwart.llm._resolve import DEFAULT_PROVIDERS, Provider

__all__ = ["ChainHealth", "probe_endpoint"]


async def probe_endpoint(url: str, *, timeout: float = 1.0) -> str | None:
    """None if a TCP connection to ``url``'s host and port opens within ``timeout``
    seconds, else why not."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"no connection to {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"unreachable ({host}:{port}: {exc.strerror or exc})"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


class ChainHealth:
    """The readiness check of one chain (see the module docstring).

    ``models`` are the chain's ``provider:model`` specs; ``providers`` the app's
    (a model whose provider brings its own client is probed by breaker only);
    ``breaker_open(spec)`` says whether that model's breaker is open.
    """

    def __init__(
        self,
        chain: str,
        models: Sequence[str],
        *,
        providers: Mapping[str, Provider] | None = None,
        breaker_open: Callable[[str], bool] = lambda _spec: False,
        timeout: float = 1.0,
    ) -> None:
        self.chain = chain
        self.models = tuple(models)
        known = {**DEFAULT_PROVIDERS, **(providers or {})}
        self.urls: dict[str, str | None] = {}
        for spec in self.models:
            provider = known.get(spec.partition(":")[0])
            usable_url = provider is not None and provider.client is None and provider.base_url
            self.urls[spec] = provider.base_url if provider is not None and usable_url else None
        self.breaker_open = breaker_open
        self.timeout = timeout

    async def unusable(self) -> dict[str, str]:
        """Each unusable model and why (probed concurrently)."""

        async def one(spec: str) -> tuple[str, str | None]:
            if self.breaker_open(spec):
                return spec, "circuit breaker open"
            url = self.urls.get(spec)
            return spec, (await probe_endpoint(url, timeout=self.timeout) if url else None)

        results = await asyncio.gather(*(one(s) for s in self.models))
        return {spec: why for spec, why in results if why is not None}

    async def check(self) -> bool | str:
        """True while one model at least is usable; else a reason naming every model."""
        bad = await self.unusable()
        if len(bad) < len(self.models):
            return True
        detail = "; ".join(f"{spec}: {why}" for spec, why in bad.items())
        return f"every model of chain {self.chain!r} is unusable — {detail}"
