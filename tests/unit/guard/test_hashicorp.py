"""The HashiCorp Vault provider: against a stand-in of hvac's KV v2 API, and against a real
Vault when ``VAULT_ADDR`` and ``VAULT_TOKEN`` point at one (skipped otherwise)."""

from __future__ import annotations

import os
import types
import uuid

import pytest

from stalwart.errors import SecretNotFound
from stalwart.guard import HashiCorpVault, SecretResolver


class FakeKV:
    """hvac's ``client.secrets.kv.v2`` surface, in memory."""

    def __init__(self) -> None:
        self.data: dict[str, list[dict[str, str]]] = {}

    def read_secret_version(self, *, path, mount_point, raise_on_deleted_version):
        if path not in self.data:
            raise KeyError(path)
        return {"data": {"data": self.data[path][-1]}}

    def create_or_update_secret(self, *, path, secret, mount_point):
        self.data.setdefault(path, []).append(dict(secret))
        return {"data": {"version": len(self.data[path])}}

    def list_secrets(self, *, path, mount_point):
        return {"data": {"keys": [k[len(path) :] for k in self.data if k.startswith(path)]}}


def fake_client() -> object:
    return types.SimpleNamespace(
        secrets=types.SimpleNamespace(kv=types.SimpleNamespace(v2=FakeKV()))
    )


def test_kv2_mapping_with_a_stand_in_client(monkeypatch) -> None:
    monkeypatch.setattr(
        "stalwart.guard._hashicorp.importlib.import_module",
        lambda name: (_ for _ in ()).throw(ImportError(name)),
    )
    vault = HashiCorpVault(client=fake_client())
    assert vault.set("model-key", "hv-value-1") == 1
    assert vault.set("model-key", "hv-value-2") == 2
    assert vault.get("model-key") == "hv-value-2"
    assert vault.names() == ["model-key"]
    with pytest.raises(SecretNotFound, match="secret/stalwart/missing"):
        vault.get("missing")
    assert SecretResolver(vault).resolve("secret://model-key") == "hv-value-2"


@pytest.mark.skipif(
    not (os.environ.get("VAULT_ADDR") and os.environ.get("VAULT_TOKEN")),
    reason="no HashiCorp Vault server (set VAULT_ADDR and VAULT_TOKEN)",
)
def test_against_a_real_vault() -> None:
    vault = HashiCorpVault()
    name = f"test-{uuid.uuid4().hex[:8]}"
    first = vault.set(name, "real-value-1")
    assert vault.set(name, "real-value-2") == first + 1
    assert vault.get(name) == "real-value-2" and name in vault.names()
