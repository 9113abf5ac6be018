"""Model strings users know (``openai:gpt-4o-mini``, ``anthropic:claude-…``, ``sim:strong``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from stalwart.clock import SYSTEM_CLOCK
from stalwart.errors import ConfigError
from stalwart.llm._anthropic import AnthropicClient
from stalwart.llm._client import HTTPModelClient
from stalwart.llm._fallback import FallbackChain
from stalwart.llm._http import ApiKey
from stalwart.llm._openai import OpenAIClient
from stalwart.resilience import DEFAULT_BREAKER, DEFAULT_RETRY, BreakerConfig, RetryPolicy

__all__ = ["Provider", "model_chain", "model_client"]


@dataclasses.dataclass(frozen=True, slots=True)
class Provider:
    """Where a provider's API lives, which wire format it speaks, its key, and the
    resilience policies of calls to it.

    Real providers and the sim differ only in these fields: nothing else
    changes between simulated and real models. ``retry`` and ``breaker`` apply
    to each of the provider's models (one breaker per model); ``None`` turns the
    mechanism off, which ``stalwart verify`` reports as a failed EH-1 / EH-2.
    """

    base_url: str
    api_key: ApiKey = None
    wire: str = "openai"  # "openai" or "anthropic"
    retry: RetryPolicy | None = DEFAULT_RETRY
    breaker: BreakerConfig | None = DEFAULT_BREAKER


DEFAULT_PROVIDERS: Mapping[str, Provider] = {
    "openai": Provider("https://api.openai.com/v1"),
    "anthropic": Provider("https://api.anthropic.com", wire="anthropic"),
}


def model_client(
    spec: str, *, providers: Mapping[str, Provider] | None = None, **options: Any
) -> HTTPModelClient:
    """Build the client for ``provider:model`` (e.g. ``sim:strong``).

    ``providers`` adds or overrides providers (the sim's URL, a key); ``options``
    go to the client (``retry``, ``breaker``, ``attempt_timeout``, ``events``…);
    ``retry`` and ``breaker`` default to the provider's.
    """
    provider_name, sep, model = spec.partition(":")
    if not sep or not provider_name or not model:
        raise ConfigError(f"model {spec!r} must look like 'provider:model', e.g. 'sim:strong'")
    known = {**DEFAULT_PROVIDERS, **(providers or {})}
    provider = known.get(provider_name)
    if provider is None:
        raise ConfigError(
            f"unknown model provider {provider_name!r} in {spec!r}; known: {sorted(known)} "
            "(add one with providers={name: Provider(base_url=..., api_key=...)})"
        )
    options.setdefault("retry", provider.retry)
    options.setdefault("breaker", provider.breaker)
    if provider.wire == "anthropic":
        return AnthropicClient(
            model,
            provider=provider_name,
            base_url=provider.base_url,
            api_key=provider.api_key,
            **options,
        )
    if provider.wire == "openai":
        return OpenAIClient(
            model,
            provider=provider_name,
            base_url=provider.base_url,
            api_key=provider.api_key,
            **options,
        )
    raise ConfigError(f"provider {provider_name!r}: wire must be 'openai' or 'anthropic'")


def model_chain(
    name: str,
    specs: Sequence[str],
    *,
    providers: Mapping[str, Provider] | None = None,
    fallback_share: float = 0.5,
    **options: Any,
) -> FallbackChain:
    """A :class:`FallbackChain` named ``name`` over the models ``specs``, in order."""
    events = options.get("events")
    clients = [model_client(s, providers=providers, **options) for s in specs]
    return FallbackChain(
        name,
        clients,
        fallback_share=fallback_share,
        events=events,
        clock=options.get("clock", SYSTEM_CLOCK),
    )
