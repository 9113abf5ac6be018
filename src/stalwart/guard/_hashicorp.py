"""A HashiCorp Vault secrets provider (KV version 2), through ``hvac`` (optional extra).

Install with ``pip install 'stalwart[vault]'``. Each secret ``name`` is the KV
entry ``<prefix><name>`` under the mount (default ``secret/stalwart/<name>``)
with one field, ``value``; Vault keeps the versions. Calls use a short
timeout; a missing entry is :class:`~stalwart.errors.SecretNotFound`, Vault
unreachable or refusing the token is :class:`~stalwart.errors.ConfigError`.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from stalwart.errors import ConfigError, SecretNotFound
from stalwart.guard._redact import default_redactor
from stalwart.guard._secrets import secret_name

__all__ = ["HashiCorpVault"]


class HashiCorpVault:
    """Secrets in HashiCorp Vault's KV v2 engine (see the module docstring)."""

    kind = "hashicorp"

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        mount: str = "secret",
        prefix: str = "stalwart/",
        timeout: float = 5.0,
        client: Any = None,
    ) -> None:
        """``url``/``token`` default to ``VAULT_ADDR``/``VAULT_TOKEN``; ``client`` is an
        ``hvac.Client`` (or anything with its ``secrets.kv.v2`` API), for tests."""
        self.mount = mount
        self.prefix = prefix
        if client is None:
            try:
                hvac = importlib.import_module("hvac")
            except ImportError:
                raise ConfigError(
                    "the HashiCorp Vault provider needs hvac: pip install 'stalwart[vault]'"
                ) from None
            address = url or os.environ.get("VAULT_ADDR")
            if not address:
                raise ConfigError("HashiCorp Vault needs a URL (url= or VAULT_ADDR)")
            client = hvac.Client(
                url=address, token=token or os.environ.get("VAULT_TOKEN"), timeout=timeout
            )
        self._kv = client.secrets.kv.v2

    def _errors(self) -> tuple[type[BaseException], type[BaseException]]:
        try:
            exceptions = importlib.import_module("hvac.exceptions")
        except ImportError:  # a fake client in tests
            return KeyError, OSError
        return exceptions.InvalidPath, exceptions.VaultError

    def get(self, name: str) -> str:
        missing, failed = self._errors()
        try:
            data = self._kv.read_secret_version(
                path=self.prefix + secret_name(name), mount_point=self.mount,
                raise_on_deleted_version=True,
            )  # fmt: skip
        except missing:
            raise SecretNotFound(
                f"no secret {name!r} at {self.mount}/{self.prefix}{name} in Vault", name=name
            ) from None
        except failed as exc:
            raise ConfigError(f"HashiCorp Vault refused reading {name!r}: {exc}") from None
        value = data["data"]["data"].get("value")
        if not isinstance(value, str):
            raise SecretNotFound(f"Vault entry for {name!r} has no string 'value'", name=name)
        return value

    def set(self, name: str, value: str) -> int:
        _, failed = self._errors()
        try:
            reply = self._kv.create_or_update_secret(
                path=self.prefix + secret_name(name), secret={"value": value},
                mount_point=self.mount,
            )  # fmt: skip
        except failed as exc:
            raise ConfigError(f"HashiCorp Vault refused writing {name!r}: {exc}") from None
        default_redactor().add_known(value)
        return int(reply["data"]["version"])

    def names(self) -> list[str]:
        missing, failed = self._errors()
        try:
            reply = self._kv.list_secrets(path=self.prefix, mount_point=self.mount)
        except missing:
            return []
        except failed as exc:
            raise ConfigError(f"HashiCorp Vault refused listing: {exc}") from None
        return sorted(str(k) for k in reply["data"]["keys"] if not str(k).endswith("/"))
