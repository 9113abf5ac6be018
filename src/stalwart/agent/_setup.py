"""What an agent process builds from its app before it runs a task: the app itself
(:func:`load_app`), its model chains with their providers' keys (:func:`build_models`),
and the resolver of ``secret://`` keys they share (:func:`secret_resolver`). Tests,
benches and verify build an agent's models the same way."""

from __future__ import annotations

import dataclasses
import functools

from stalwart.agent._spec import App
from stalwart.config import load_instance
from stalwart.guard import SecretResolver, default_redactor, is_secret_ref, provider_from_env
from stalwart.llm import ModelClient, Provider, model_chain
from stalwart.observe import EventBus

__all__ = ["build_models", "load_app", "secret_resolver"]


def load_app(ref: str) -> App:
    """The :class:`App` named ``module:attribute`` (or returned by calling it), or a
    ``.toml`` file describing one."""
    if ref.endswith(".toml"):
        from stalwart.agent._toml import app_from_toml

        return app_from_toml(ref)
    return load_instance(ref, App, "app")


@functools.cache
def secret_resolver() -> SecretResolver:
    """This process's resolver of ``secret://`` references (provider from the environment)."""
    return SecretResolver(provider_from_env())


def build_models(
    app: App, chains: set[str], sim_url: str | None, events: EventBus
) -> dict[str, ModelClient]:
    """The model chains named ``chains`` of ``app``, their events on ``events``; the
    app's ``sim`` provider pointed at ``sim_url`` when given, each ``secret://`` key
    resolved per request, each plain key known to the redactor."""
    providers = dict(app.providers)
    if sim_url:
        sim = providers.get("sim")  # the app may give the sim a key and policies
        base = f"{sim_url}/v1"
        providers["sim"] = dataclasses.replace(sim, base_url=base) if sim else Provider(base)
    for name, provider in providers.items():
        if is_secret_ref(provider.api_key):  # resolved per request, refreshed on a 401
            assert isinstance(provider.api_key, str)
            key = secret_resolver().key(provider.api_key)
            providers[name] = dataclasses.replace(provider, api_key=key)
        elif isinstance(provider.api_key, str):  # a plain key (SE-1 flags it): never written
            default_redactor().add_known(provider.api_key)
    prices = app.price_table()  # one table for cost reports and budget reservations
    return {
        name: model_chain(name, app.models[name], providers=providers, events=events, prices=prices)
        for name in chains
    }
