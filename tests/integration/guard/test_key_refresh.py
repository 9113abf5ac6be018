"""A 401 makes the model client re-read its key provider once and retry with the new key."""

from __future__ import annotations

import pytest

from stalwart.errors import ModelAuthError
from stalwart.guard import EnvProvider, SecretResolver
from stalwart.llm import Message, ModelRequest, model_client
from stalwart.llm._client import KEY_REFRESHES
from stalwart.llm._resolve import Provider
from stalwart.llm.sim import SimServer


def ask() -> ModelRequest:
    return ModelRequest(messages=(Message(role="user", content="What is 2 + 3?"),))


async def test_a_rotated_key_is_picked_up_on_the_401() -> None:
    environ = {"STALWART_SECRET_SIM_KEY": "sk-old-key-111111"}
    resolver = SecretResolver(EnvProvider(environ), ttl=3600)  # never expires on its own
    with SimServer() as sim:
        sim.world.set_keys("strong", ["sk-old-key-111111"])
        provider = Provider(f"{sim.url}/v1", api_key=resolver.key("secret://sim-key"))
        client = model_client("sim:strong", providers={"sim": provider}, retry=None, breaker=None)
        try:
            assert "5" in (await client.complete(ask(), timeout=5)).message.content
            environ["STALWART_SECRET_SIM_KEY"] = "sk-new-key-222222"  # rotated at the source
            sim.world.set_keys("strong", ["sk-new-key-222222"])  # and the old key revoked
            before = KEY_REFRESHES.labels("sim:strong", "sim")._value.get()
            assert "5" in (await client.complete(ask(), timeout=5)).message.content
            assert KEY_REFRESHES.labels("sim:strong", "sim")._value.get() == before + 1
            assert sim.world.keys_seen["strong:222222"] == 1
            sim.world.set_keys("strong", ["sk-something-else"])  # a wrong key stays an error
            with pytest.raises(ModelAuthError):
                await client.complete(ask(), timeout=5)
        finally:
            await client.aclose()
