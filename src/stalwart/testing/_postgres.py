"""A throwaway PostgreSQL database per test, on a real server.

The admin connections here are raw psycopg ones on purpose, beside the database
kernel: CREATE and DROP DATABASE cannot run inside a transaction, and every kernel
operation is one; and this module is a test helper that nothing in ``src/`` imports.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

__all__ = ["PG_ADMIN", "postgres_database", "postgres_reachable"]

PG_ADMIN = os.environ.get("STALWART_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The server tests use: ``$STALWART_TEST_PG``, or the local one as user postgres."""


def postgres_reachable(admin_url: str = PG_ADMIN) -> bool:
    """Whether the server answers a connection within 3 s."""
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def postgres_database(prefix: str = "stalwart_test", admin_url: str = PG_ADMIN) -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (connections and all).

    Raises :class:`psycopg.OperationalError` if the server is not reachable (within
    5 s): the caller decides whether that skips or fails its test.
    """
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
