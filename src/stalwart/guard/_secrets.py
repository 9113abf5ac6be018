"""Secrets: references in config, values resolved at call time from a provider.

Config and code hold ``secret://name``; a :class:`SecretResolver` turns it into
the current value when a request is made, caches it for ``ttl`` seconds (on an
injected clock), and forgets it on :meth:`SecretResolver.refresh` — which the
model clients call on a 401, so a rotated key is picked up by the very next
attempt and rotation under load fails no call.

Providers:

- :class:`LocalVault`, the default: one file encrypted with Fernet
  (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key kept in a
  separate key file (mode 0600, created on first use) or given as
  ``STALWART_VAULT_KEY``. Writers take a file lock and replace the file
  atomically, so ``stalwart secrets rotate`` in one process and the agents
  reading it in others never see half a file; readers reload when it changes.
- :class:`EnvProvider`, for development only: ``STALWART_SECRET_<NAME>``. It
  logs a warning once, and SE-1's verdict (:func:`secrets_posture`) is partial with it.

Every value a resolver hands out is registered with the redactor, so it is
removed from any log line, event, error or output it might reach, and with the
journal's sealing (:mod:`stalwart.guard._sealed`), so the store keeps
``secret://name`` where a step returned the value.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stalwart.clock import SYSTEM_CLOCK, Clock
from stalwart.errors import ConfigError, SecretNotFound
from stalwart.guard._redact import Redactor, default_redactor
from stalwart.guard._sealed import remember_secret
from stalwart.observe import get_logger

__all__ = [
    "SECRET_SCHEME",
    "EnvProvider",
    "LocalVault",
    "SecretKey",
    "SecretProvider",
    "SecretResolver",
    "is_secret_ref",
    "learn_vault_secrets",
    "provider_from_env",
    "resolve_setting",
    "secret_name",
]

SECRET_SCHEME = "secret://"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
_log = get_logger("stalwart.guard")


def is_secret_ref(value: object) -> bool:
    """True for ``secret://name`` strings."""
    return isinstance(value, str) and value.startswith(SECRET_SCHEME)


def secret_name(ref: str) -> str:
    """``name`` from ``secret://name`` (a bare name is accepted too)."""
    name = ref[len(SECRET_SCHEME) :] if ref.startswith(SECRET_SCHEME) else ref
    if not _NAME.match(name):
        raise ConfigError(
            f"secret name {name!r} must start with a letter and use letters, digits, _ . -"
        )
    return name


@runtime_checkable
class SecretProvider(Protocol):
    """Where secret values live. ``get`` raises :class:`SecretNotFound` for an unknown name."""

    kind: str

    def get(self, name: str) -> str: ...

    def set(self, name: str, value: str) -> int: ...

    def names(self) -> list[str]: ...


class EnvProvider:
    """Secrets from ``STALWART_SECRET_<NAME>`` variables. Development only (warns once)."""

    kind = "env"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ
        self._warned = False

    @staticmethod
    def variable(name: str) -> str:
        """The variable holding ``name``: ``openai-key`` -> ``STALWART_SECRET_OPENAI_KEY``."""
        return "STALWART_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()

    def get(self, name: str) -> str:
        if not self._warned:
            self._warned = True
            _log.warning(
                "env_secret_provider",
                detail="secrets come from environment variables: for development only",
            )
        value = self._environ.get(self.variable(name))
        if value is None:
            raise SecretNotFound(
                f"no secret {name!r}: set {self.variable(name)} or use the vault", name=name
            )
        return value

    def set(self, name: str, value: str) -> int:
        raise ConfigError("the env secret provider is read-only; set the variable instead")

    def names(self) -> list[str]:
        prefix = "STALWART_SECRET_"
        return sorted(k[len(prefix) :].lower() for k in self._environ if k.startswith(prefix))


class LocalVault:
    """An encrypted file of named secrets, each with a version (see the module docstring)."""

    kind = "vault"

    def __init__(self, path: str | os.PathLike[str], *, key_file: str | None = None) -> None:
        self.path = Path(path)
        self.key_file = Path(key_file) if key_file else self.path.with_suffix(".key")
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._fernet: Any = None

    # -- key and file ------------------------------------------------------------------------
    def _cipher(self) -> Any:
        if self._fernet is not None:
            return self._fernet
        from cryptography.fernet import Fernet

        env_key = os.environ.get("STALWART_VAULT_KEY")
        if env_key:
            key = env_key.encode()
        elif self.key_file.exists():
            key = self.key_file.read_bytes().strip()
        else:
            self.key_file.parent.mkdir(parents=True, exist_ok=True)
            key = Fernet.generate_key()
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key + b"\n")
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise ConfigError(
                f"vault key in {self.key_file} is not a Fernet key (32 url-safe base64 bytes)"
            ) from None
        return self._fernet

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with self._lock, open(lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {"version": 1, "secrets": {}}
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        from cryptography.fernet import InvalidToken

        token = self.path.read_bytes()
        try:
            data: dict[str, Any] = json.loads(self._cipher().decrypt(token))
        except InvalidToken:
            raise ConfigError(
                f"cannot decrypt the vault {self.path}: wrong key file {self.key_file}"
            ) from None
        self._cache = (stamp, data)
        return data

    def _store(self, data: dict[str, Any]) -> None:
        token = self._cipher().encrypt(json.dumps(data).encode())
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(token)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._cache = None

    # -- the provider API ------------------------------------------------------------------------
    def get(self, name: str) -> str:
        entry = self._load()["secrets"].get(name)
        if entry is None:
            raise SecretNotFound(
                f"no secret {name!r} in the vault {self.path}; add it with "
                f"`stalwart secrets set {name}`",
                name=name,
            )
        return str(entry["value"])

    def generation(self) -> tuple[int, int, int]:
        """Changes whenever the vault file is rewritten (a set or a rotation, by any process):
        a resolver re-reads a cached value when it changes, TTL or not."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def version(self, name: str) -> int:
        entry = self._load()["secrets"].get(name)
        if entry is None:
            raise SecretNotFound(f"no secret {name!r} in the vault {self.path}", name=name)
        return int(entry["version"])

    def set(self, name: str, value: str) -> int:
        """Store ``value`` under ``name`` (a new version if it exists); returns the version."""
        version = self._write(name, value, replace=True)
        assert version is not None
        return version

    def ensure(self, name: str, value: str) -> bool:
        """Store ``value`` under ``name`` unless the vault holds ``name`` already.

        Returns True when it stored the value. The check and the write are one step
        under the vault's lock, so processes racing to provision the same secret
        (several nodes starting at once) store one value between them.
        """
        return self._write(name, value, replace=False) is not None

    def _write(self, name: str, value: str, *, replace: bool) -> int | None:
        """Store ``value`` under ``name`` under the vault's lock; the new version, or None
        when ``name`` exists and ``replace`` is false (nothing written)."""
        secret_name(name)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"secret {name!r}: the value must be a non-empty string")
        with self._locked():
            self._cache = None
            data = self._load()
            old = data["secrets"].get(name)
            if old is not None and not replace:
                return None
            version = int(old["version"]) + 1 if old else 1
            data["secrets"][name] = {"value": value, "version": version}
            self._store(data)
        default_redactor().add_known(value)
        remember_secret(name, value)  # journaled as secret://name, never as the value
        return version

    def rotate(self, name: str, value: str | None = None) -> int:
        """Replace ``name``'s value (a fresh random one if ``value`` is None)."""
        self.get(name)  # rotating an unknown secret is a mistake, not a create
        new = value or base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        return self.set(name, new)

    def names(self) -> list[str]:
        return sorted(self._load()["secrets"])


def provider_from_env(environ: Mapping[str, str] | None = None) -> SecretProvider:
    """The provider ``STALWART_SECRETS`` names: ``vault`` (default), ``hashicorp`` or ``env``.

    The vault is ``STALWART_VAULT`` (default ``.stalwart/vault.enc``) with its key in
    ``STALWART_VAULT_KEY_FILE`` (default: the vault's path with ``.key``).
    """
    env = environ if environ is not None else os.environ
    kind = env.get("STALWART_SECRETS", "vault")
    if kind == "env":
        return EnvProvider(env)
    if kind == "vault":
        return LocalVault(
            env.get("STALWART_VAULT", ".stalwart/vault.enc"),
            key_file=env.get("STALWART_VAULT_KEY_FILE") or None,
        )
    if kind == "hashicorp":
        from stalwart.guard._hashicorp import HashiCorpVault

        return HashiCorpVault(
            env.get("VAULT_ADDR"),
            token=env.get("VAULT_TOKEN"),
            mount=env.get("STALWART_VAULT_MOUNT", "secret"),
        )
    raise ConfigError(f"STALWART_SECRETS must be 'vault', 'hashicorp' or 'env', got {kind!r}")


def learn_vault_secrets(
    provider: SecretProvider | None = None, redactor: Redactor | None = None
) -> int:
    """Register every secret of the local vault (or of the env provider's variables) with
    ``redactor`` (default: the process one); returns how many. A node calls it at start:
    its agents resolve secrets in their own processes, and what they write past the
    logging pipeline (raw output on fd 1 or 2) is redacted by the node, which must know
    the values to remove them. A remote provider (HashiCorp Vault: listing it would be a
    network call per start) and a vault that cannot be read register nothing."""
    chosen = provider if provider is not None else provider_from_env()
    if not isinstance(chosen, LocalVault | EnvProvider):
        return 0
    target = redactor or default_redactor()
    try:
        names = chosen.names()
        values = [chosen.get(name) for name in names]
    except (ConfigError, SecretNotFound, OSError) as exc:
        _log.warning("secrets_not_learned", error_class=type(exc).__name__, kind=chosen.kind)
        return 0
    target.add_known(*values)
    return len(values)


def resolve_setting(value: str | None, resolver: SecretResolver | None = None) -> str | None:
    """A setting that may be a ``secret://`` reference (an API token, an SMTP password),
    resolved now; any other value is returned as it is."""
    if value is None or not is_secret_ref(value):
        return value
    return (resolver or SecretResolver(provider_from_env())).resolve(value)


class SecretResolver:
    """Resolves ``secret://`` references at call time, with a short TTL cache.

    ``ttl`` (seconds, default 30) bounds how long a rotated value can still be
    used before the next lookup; a 401 calls :meth:`refresh` and the next
    attempt reads the provider again. A provider with a ``generation()`` (the
    local vault: its file's stamp) is asked at each use, so a rotation there is
    picked up at once, whatever the TTL.
    """

    def __init__(
        self,
        provider: SecretProvider,
        *,
        ttl: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
        redactor: Redactor | None = None,
    ) -> None:
        if ttl < 0:
            raise ConfigError(f"secret cache ttl must be >= 0, got {ttl}")
        self.provider = provider
        self.ttl = ttl
        self.clock = clock
        self.redactor = redactor or default_redactor()
        self._cache: dict[str, tuple[float, str, object]] = {}
        self._lock = threading.Lock()
        self.lookups = 0
        self.refreshes = 0

    def resolve(self, ref: str) -> str:
        """The current value of ``secret://name`` (or of a bare ``name``)."""
        name = secret_name(ref)
        now = self.clock.monotonic()
        generation = getattr(self.provider, "generation", None)
        stamp = generation() if callable(generation) else None
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and now - hit[0] < self.ttl and hit[2] == stamp:
                return hit[1]
        value = self.provider.get(name)
        self.redactor.add_known(value)
        remember_secret(name, value, self)  # the journal stores secret://name, not the value
        with self._lock:
            self.lookups += 1
            self._cache[name] = (now, value, stamp)
        return value

    def refresh(self, ref: str | None = None) -> None:
        """Forget the cached value of ``ref`` (all of them if None): the next use re-reads."""
        with self._lock:
            self.refreshes += 1
            if ref is None:
                self._cache.clear()
            else:
                self._cache.pop(secret_name(ref), None)

    def key(self, ref: str) -> SecretKey:
        """A callable for ``api_key=``: the current value at each request, refreshable."""
        secret_name(ref)
        return SecretKey(self, ref)


class SecretKey:
    """``api_key`` for a model client: called per request; ``refresh()`` on a 401."""

    __slots__ = ("ref", "resolver")

    def __init__(self, resolver: SecretResolver, ref: str) -> None:
        self.resolver, self.ref = resolver, ref

    def __call__(self) -> str:
        return self.resolver.resolve(self.ref)

    def refresh(self) -> None:
        """Forget the cached value (the model client calls this on a 401)."""
        self.resolver.refresh(self.ref)

    def __repr__(self) -> str:  # never the value
        return f"SecretKey({self.ref!r})"
