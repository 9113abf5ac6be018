"""Secrets: the encrypted vault, the env provider, the resolver's TTL cache and refresh."""

from __future__ import annotations

import pytest

from stalwart.errors import ConfigError, SecretNotFound
from stalwart.guard import (
    EnvProvider,
    LocalVault,
    SecretResolver,
    default_redactor,
    provider_from_env,
    resolve_setting,
    secret_name,
)
from stalwart.testing import FakeClock


def test_vault_round_trip_is_encrypted_and_versioned(tmp_path) -> None:
    vault = LocalVault(tmp_path / "v.enc")
    assert vault.set("api", "s3cr3t-value-1") == 1
    assert vault.rotate("api", "s3cr3t-value-2") == 2
    assert vault.get("api") == "s3cr3t-value-2" and vault.version("api") == 2
    assert b"s3cr3t" not in (tmp_path / "v.enc").read_bytes()
    assert oct((tmp_path / "v.key").stat().st_mode & 0o777) == "0o600"
    # another process (another instance) reads the same file
    assert LocalVault(tmp_path / "v.enc").get("api") == "s3cr3t-value-2"
    assert vault.names() == ["api"]


def test_vault_errors_are_clear(tmp_path) -> None:
    vault = LocalVault(tmp_path / "v.enc")
    with pytest.raises(SecretNotFound, match="stalwart secrets set nope"):
        vault.get("nope")
    with pytest.raises(SecretNotFound):
        vault.rotate("nope")
    vault.set("a", "value-a")
    other_key = tmp_path / "other.key"
    with pytest.raises(ConfigError, match="cannot decrypt"):
        LocalVault(tmp_path / "v.enc", key_file=str(other_key)).get("a")
    with pytest.raises(ConfigError):
        secret_name("secret://bad name")


def test_rotate_without_a_value_makes_a_random_one(tmp_path) -> None:
    vault = LocalVault(tmp_path / "v.enc")
    vault.set("k", "first-value")
    vault.rotate("k")
    assert vault.get("k") != "first-value" and len(vault.get("k")) >= 40


def test_resolver_caches_for_ttl_and_refreshes(tmp_path) -> None:
    clock = FakeClock()
    vault = LocalVault(tmp_path / "v.enc")
    vault.set("k", "value-one")
    resolver = SecretResolver(vault, ttl=30, clock=clock)
    key = resolver.key("secret://k")
    assert key() == "value-one"
    vault.rotate("k", "value-two")
    assert key() == "value-two"  # the vault file changed: re-read at once, TTL or not
    lookups = resolver.lookups
    assert key() == "value-two" and resolver.lookups == lookups  # cached while unchanged
    env = EnvProvider({"STALWART_SECRET_E": "env-one"})
    env_resolver = SecretResolver(env, ttl=30, clock=clock)
    assert env_resolver.resolve("secret://e") == "env-one"
    env._environ = {"STALWART_SECRET_E": "env-two"}  # a provider without a generation
    assert env_resolver.resolve("secret://e") == "env-one"  # cached
    clock.advance(31)
    assert env_resolver.resolve("secret://e") == "env-two"  # the TTL passed
    vault.rotate("k", "value-three")
    key.refresh()  # what a 401 does
    assert key() == "value-three"
    assert "value-three" not in repr(key)
    assert default_redactor().redact("x value-three y") == "x [REDACTED:secret] y"


def test_env_provider_is_for_development(monkeypatch) -> None:
    provider = EnvProvider({"STALWART_SECRET_MODEL_KEY": "abc123xyz"})
    assert provider.get("model-key") == "abc123xyz"
    with pytest.raises(SecretNotFound, match="STALWART_SECRET_OTHER"):
        provider.get("other")
    with pytest.raises(ConfigError):
        provider.set("x", "y")
    assert isinstance(provider_from_env({"STALWART_SECRETS": "env"}), EnvProvider)
    assert isinstance(provider_from_env({}), LocalVault)
    with pytest.raises(ConfigError):
        provider_from_env({"STALWART_SECRETS": "nope"})


def test_settings_may_be_secret_references(tmp_path) -> None:
    vault = LocalVault(tmp_path / "v.enc")
    vault.set("api-token", "a-long-api-token-value-123")
    resolver = SecretResolver(vault)
    assert resolve_setting("secret://api-token", resolver) == "a-long-api-token-value-123"
    assert resolve_setting("plain-value", resolver) == "plain-value"
    assert resolve_setting(None, resolver) is None
