"""Model strings users know (``openai:gpt-4o-mini``, ``anthropic:claude-…``, ``sim:strong``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stalwart.clock import SYSTEM_CLOCK
from stalwart.errors import ConfigError
from stalwart.llm._anthropic import AnthropicClient
from stalwart.llm._capabilities import Capabilities
from stalwart.llm._client import HTTPModelClient
from stalwart.llm._fallback import FallbackChain
from stalwart.llm._guarded import GuardedModel
from stalwart.llm._http import ApiKey
from stalwart.llm._openai import OpenAIClient
from stalwart.llm._responses import OpenAIResponsesClient
from stalwart.llm._types import ModelClient
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

    ``wire`` is ``openai`` (Chat Completions), ``openai-responses`` (the
    Responses API) or ``anthropic`` (Messages). ``self_hosted=True`` declares
    the provider's models free (a vLLM, Ollama or LiteLLM-proxy endpoint of
    yours): they need no price. ``capabilities`` replaces the capability
    table's guess for every model of this provider (e.g. a reasoning model
    served by vLLM). ``client`` brings your own client: a function of the model
    name returning a :class:`~stalwart.llm.ModelClient`, run inside
    :class:`~stalwart.llm.GuardedModel` (``base_url`` may then be empty).
    """

    base_url: str = ""
    api_key: ApiKey = None
    wire: str = "openai"
    retry: RetryPolicy | None = DEFAULT_RETRY
    breaker: BreakerConfig | None = DEFAULT_BREAKER
    self_hosted: bool = False
    capabilities: Capabilities | None = None
    client: Callable[[str], ModelClient] | None = None

    def __post_init__(self) -> None:
        if self.wire not in WIRES:
            raise ConfigError(f"Provider wire must be one of {list(WIRES)}, got {self.wire!r}")
        if self.client is None and not self.base_url:
            raise ConfigError("a Provider needs base_url= (or client= for your own client)")


WIRES = ("openai", "openai-responses", "anthropic")


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
    if provider.client is not None:
        raise ConfigError(
            f"provider {provider_name!r} brings its own client: use model_chain() (which wraps "
            "it in GuardedModel) instead of model_client()"
        )
    if provider.capabilities is not None:
        options.setdefault("capabilities", provider.capabilities)
    if provider.wire == "anthropic":
        return AnthropicClient(
            model,
            provider=provider_name,
            base_url=provider.base_url,
            api_key=provider.api_key,
            **options,
        )
    if provider.wire == "openai-responses":
        return OpenAIResponsesClient(
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
    raise ConfigError(f"provider {provider_name!r}: wire must be one of {list(WIRES)}")


def _any_client(
    spec: str, providers: Mapping[str, Provider] | None, options: Mapping[str, Any]
) -> ModelClient:
    provider_name, _, model = spec.partition(":")
    provider = {**DEFAULT_PROVIDERS, **(providers or {})}.get(provider_name)
    if provider is None or provider.client is None:
        return model_client(spec, providers=providers, **options)
    return GuardedModel(
        provider.client(model),
        provider=provider_name,
        retry=options.get("retry", provider.retry),
        breaker=options.get("breaker", provider.breaker),
        attempt_timeout=options.get("attempt_timeout"),
        prices=options.get("prices"),
        events=options.get("events"),
        clock=options.get("clock", SYSTEM_CLOCK),
    )


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
    clients = [_any_client(s, providers, options) for s in specs]
    return FallbackChain(
        name,
        clients,
        fallback_share=fallback_share,
        events=events,
        clock=options.get("clock", SYSTEM_CLOCK),
    )
