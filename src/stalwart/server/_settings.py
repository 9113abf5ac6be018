"""Settings of the node's HTTP server, log store and alerting, with their defaults.

Every field can also come from an environment variable (``from_env``), which is
how ``stalwart run``, the systemd unit and the Kubernetes manifests set them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Mapping

from stalwart.errors import ConfigError
from stalwart.guard import is_secret_ref, secret_name

__all__ = ["ServerSettings", "is_loopback"]

PUBLIC_PATHS = ("/livez", "/readyz", "/metrics")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name or "": it may resolve to (or mean) every interface


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSettings:
    """See ``docs/observability.md`` for what each one does; defaults are production-safe.

    host / port
        Where the HTTP API listens (``127.0.0.1:8470``; ``port=0`` picks a free port).
    api_token
        The bearer token every non-public path requires (reads included): a literal
        of 16+ characters, or ``secret://name`` resolved at each request through the
        secrets provider (so a rotation takes effect without a restart). ``None``:
        reads are open and mutations answer 403, allowed only on a loopback ``host``.
    public_paths
        Paths that need no token (``/livez``, ``/readyz``, ``/metrics``).
    rate_limit_per_s / rate_limit_burst
        Requests per second each client address may make (20), with bursts of up to
        this many (100); over it: 429 with ``Retry-After``. Probes are never limited.
    max_body_bytes
        Largest request body accepted (64 KiB); a larger one gets 413.
    log_db
        The log store: a SQLite file (``stalwart-logs.db``) or a ``postgresql://`` URL
        shared by all nodes; ``None``: no store.
    log_retention_s / log_max_rows
        The log store keeps at most this many seconds (7 days) and lines (1 000 000).
    alert_interval_s
        Seconds between alert evaluations (5).
    alert_rules
        A TOML file of rule changes merged over the defaults (none: the defaults).
    webhook_url / slack_url / alertmanager_url
        Alert receivers (none by default).
    smtp_host / smtp_port / smtp_from / smtp_to / smtp_user / smtp_password / smtp_starttls
        E-mail receiver (off unless ``smtp_host`` and ``smtp_to`` are set).
    notify_timeout_s
        Deadline of one notification attempt (10 s); 3 attempts with backoff.
    health_timeout_s
        Deadline of each readiness check (3 s).
    otlp_endpoint / otlp_interval_s
        OTLP/HTTP collector base URL (none: no export) and seconds between exports (15).
    """

    host: str = "127.0.0.1"
    port: int = 8470
    api_token: str | None = None
    public_paths: tuple[str, ...] = PUBLIC_PATHS
    rate_limit_per_s: float = 20.0
    rate_limit_burst: int = 100
    max_body_bytes: int = 64 * 1024
    log_db: str | None = "stalwart-logs.db"
    log_retention_s: float = 7 * 86400.0
    log_max_rows: int = 1_000_000
    alert_interval_s: float = 5.0
    alert_rules: str | None = None
    webhook_url: str | None = None
    slack_url: str | None = None
    alertmanager_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "stalwart@localhost"
    smtp_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    notify_timeout_s: float = 10.0
    health_timeout_s: float = 3.0
    otlp_endpoint: str | None = None
    otlp_interval_s: float = 15.0

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"server.port = {self.port!r} must be an int in 0..65535")
        if not 1024 <= self.max_body_bytes <= 64 * 2**20:
            raise ConfigError(
                f"server.max_body_bytes = {self.max_body_bytes!r} not in 1 KiB..64 MiB"
            )
        for name in (
            "log_retention_s",
            "alert_interval_s",
            "notify_timeout_s",
            "health_timeout_s",
            "otlp_interval_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"server.{name} = {value!r} must be a positive number")
        self._check_token()
        self._check_public_paths()
        rate = self.rate_limit_per_s
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise ConfigError(f"server.rate_limit_per_s = {rate!r} must be a number")
        if not math.isfinite(rate) or rate <= 0:
            raise ConfigError(
                f"server.rate_limit_per_s = {rate!r} must be a positive, finite number of "
                "requests per second per client (default 20)"
            )
        burst = self.rate_limit_burst
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError(
                f"server.rate_limit_burst = {burst!r} must be a whole number of requests >= 1 "
                "(default 100)"
            )

    def _check_token(self) -> None:
        token = self.api_token
        if token is None:
            if not is_loopback(self.host):
                raise ConfigError(
                    f"server.host = {self.host!r} accepts connections from other machines but "
                    "no API token is configured: set server.api_token (STALWART_API_TOKEN: 16+ "
                    "characters, or secret://name from the secrets provider), or listen on "
                    "127.0.0.1"
                )
            return
        if not isinstance(token, str):
            raise ConfigError("server.api_token must be a string (a token or secret://name)")
        if is_secret_ref(token):
            try:
                secret_name(token)
            except ConfigError as exc:
                raise ConfigError(f"server.api_token: {exc}") from None
        elif len(token) < 16:
            raise ConfigError(
                "server.api_token must be at least 16 characters (or a secret://name reference)"
            )

    def _check_public_paths(self) -> None:
        paths = self.public_paths
        if isinstance(paths, str) or not isinstance(paths, tuple | list):
            raise ConfigError(
                f"server.public_paths = {paths!r} must be a list of paths like '/livez'"
            )
        for path in paths:
            if (
                not isinstance(path, str)
                or not path.startswith("/")
                or any(c.isspace() for c in path)
            ):
                raise ConfigError(
                    f"server.public_paths: {path!r} is not a path (it must start with '/' and "
                    "contain no spaces)"
                )
        object.__setattr__(self, "public_paths", tuple(paths))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ServerSettings:
        """Settings from ``STALWART_*`` variables (``STALWART_HTTP_PORT``…), then ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        strings = {
            "STALWART_HTTP_HOST": "host",
            "STALWART_API_TOKEN": "api_token",
            "STALWART_LOG_DB": "log_db",
            "STALWART_ALERT_WEBHOOK_URL": "webhook_url",
            "STALWART_ALERT_SLACK_URL": "slack_url",
            "STALWART_ALERTMANAGER_URL": "alertmanager_url",
            "STALWART_SMTP_HOST": "smtp_host",
            "STALWART_SMTP_FROM": "smtp_from",
            "STALWART_SMTP_USER": "smtp_user",
            "STALWART_SMTP_PASSWORD": "smtp_password",
            "STALWART_OTLP_ENDPOINT": "otlp_endpoint",
            "STALWART_ALERT_RULES": "alert_rules",
        }
        for var, field in strings.items():
            if env.get(var):
                values[field] = env[var]
        numbers = {
            "STALWART_HTTP_PORT": ("port", int),
            "STALWART_SMTP_PORT": ("smtp_port", int),
            "STALWART_MAX_BODY_BYTES": ("max_body_bytes", int),
            "STALWART_LOG_RETENTION_S": ("log_retention_s", float),
            "STALWART_ALERT_INTERVAL_S": ("alert_interval_s", float),
            "STALWART_OTLP_INTERVAL_S": ("otlp_interval_s", float),
            "STALWART_API_RATE_LIMIT_PER_S": ("rate_limit_per_s", float),
            "STALWART_API_RATE_BURST": ("rate_limit_burst", int),
        }
        for var, (field, kind) in numbers.items():
            if env.get(var):
                try:
                    values[field] = kind(env[var])
                except ValueError:
                    raise ConfigError(f"{var}={env[var]!r} is not a number") from None
        if env.get("STALWART_API_PUBLIC_PATHS") is not None:  # "" makes every path need it
            raw = env["STALWART_API_PUBLIC_PATHS"].split(",")
            values["public_paths"] = tuple(p.strip() for p in raw if p.strip())
        if env.get("STALWART_SMTP_TO"):
            values["smtp_to"] = tuple(a.strip() for a in env["STALWART_SMTP_TO"].split(","))
        if env.get("STALWART_SMTP_STARTTLS"):
            values["smtp_starttls"] = env["STALWART_SMTP_STARTTLS"].lower() in ("1", "true", "yes")
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
