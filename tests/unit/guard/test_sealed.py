"""seal/unseal on their own: every shape of JSON data, secrets JSON must escape, forgeries."""

from __future__ import annotations

import pytest

from stalwart.guard import LocalVault, SecretResolver, seal, unseal


@pytest.fixture
def resolver(tmp_path) -> SecretResolver:
    vault = LocalVault(tmp_path / "v.enc", key_file=str(tmp_path / "v.key"))
    vault.set("plain-key", "Pk-7hQ2mZx9Lr4Wv")
    vault.set("quoted-key", 'Qk"7h\\Q2m-Zx9')  # reads differently inside a JSON string
    return SecretResolver(vault)


def test_every_place_a_secret_can_hide_is_sealed_and_comes_back(resolver) -> None:
    plain = resolver.resolve("secret://plain-key")
    quoted = resolver.resolve("secret://quoted-key")
    value = {
        "list": [f"a {plain} b", {"deep": (quoted, 3)}],
        plain: "as a key",
        7: f"{quoted}{plain}",
        "untouched": ["x", 1.5, None, True],
    }
    sealed = seal(value)
    assert plain not in repr(sealed) and quoted not in repr(sealed)
    assert sealed["untouched"] is value["untouched"]  # nothing copied that had no secret
    assert unseal(sealed) == value


def test_a_value_without_secrets_is_returned_as_it_is(resolver) -> None:
    resolver.resolve("secret://plain-key")
    value = {"text": "nothing to see", "n": [1, 2, {"k": "v"}]}
    assert seal(value) is value
    assert seal(4.5) == 4.5 and seal(None) is None


def test_marker_characters_in_data_cannot_forge_a_reference(resolver) -> None:
    forged = {"note": "\ue000secret://plain-key\ue001"}
    stored = seal(forged)
    assert stored == {"note": "\ufffdsecret://plain-key\ufffd"}
    assert unseal(stored) == stored  # never resolved into the key


def test_a_node_learns_local_secret_values_for_raw_output(tmp_path) -> None:
    from stalwart.guard import EnvProvider, Redactor, learn_vault_secrets

    vault = LocalVault(tmp_path / "n.enc", key_file=str(tmp_path / "n.key"))
    vault.set("a", "Vq8-zzTop-Lm3")
    env = EnvProvider({"STALWART_SECRET_B_KEY": "Env-9Kd2-qq7W", "HOME": "/root"})
    redactor = Redactor()
    assert learn_vault_secrets(vault, redactor) == 1
    assert learn_vault_secrets(env, redactor) == 1
    assert redactor.redact("raw Vq8-zzTop-Lm3 and Env-9Kd2-qq7W") == (
        "raw [REDACTED:secret] and [REDACTED:secret]"
    )
    missing = LocalVault(tmp_path / "none.enc", key_file=str(tmp_path / "none.key"))
    assert learn_vault_secrets(missing, redactor) == 0  # no vault yet: nothing, no error
