"""Database URLs: which dialect, where, and how to print it without credentials."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Literal

from stalwart.errors import ConfigError

__all__ = ["FORMS", "DatabaseURL", "parse_url", "redact"]

FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, postgresql://user@host:port/dbname"
)
Dialect = Literal["sqlite", "postgres"]


@dataclasses.dataclass(frozen=True, slots=True)
class DatabaseURL:
    """A parsed database URL. ``target`` is the SQLite file (or ``:memory:``) or the
    libpq URL with its credentials; ``display`` never holds a password."""

    dialect: Dialect
    target: str
    display: str


def redact(url: str) -> str:
    """``url`` without its password (for logs, errors and reports)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "sqlite" or (parts.password is None and not parts.query):
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_url(url: str, *, setting: str = "durable.store_url") -> DatabaseURL:
    """Parse ``url``; a wrong one raises ConfigError naming ``setting`` and the forms."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"{setting} = {url!r} is not a store URL; expected {FORMS}")
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"{setting} = {url!r} names no file; expected {FORMS}")
        path = urllib.parse.unquote(path)
        return DatabaseURL("sqlite", path, f"sqlite:///{path}")
    if scheme in ("postgresql", "postgres"):
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname and not parts.path.strip("/") and not parts.query:
            # libpq would fill in its defaults (a local socket, the user's database):
            # a store that "works" somewhere nobody meant
            raise ConfigError(
                f"{setting} = {url!r} names no host and no database; expected {FORMS}"
            )
        return DatabaseURL("postgres", url, redact(url))
    raise ConfigError(
        f"{setting} = {redact(url)!r} has an unsupported scheme {scheme!r}; expected {FORMS}"
    )
