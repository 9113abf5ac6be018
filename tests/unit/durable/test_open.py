"""Store URLs and settings: wrong values are named in the error."""

from __future__ import annotations

import pathlib

import pytest

from stalwart.durable import PostgresStore, SQLiteStore, open_store, store_from_url
from stalwart.errors import ConfigError, StoreError


def test_sqlite_urls(tmp_path: pathlib.Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "a.db"
    assert store.durability == "full"
    assert store_from_url("sqlite:///rel.db", durability="normal").durability == "normal"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unsupported scheme 'mysql'"),
        ("just-a-path.db", "is not a store URL"),
        ("sqlite://", "names no file"),
    ],
)
def test_bad_urls_are_named(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        store_from_url(url)


def test_bad_settings_are_named(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="durability = 'fast'"):
        SQLiteStore(tmp_path / "a.db", durability="fast")
    with pytest.raises(ConfigError, match=r"timeouts\.store"):
        SQLiteStore(tmp_path / "a.db", timeout=0.01)
    with pytest.raises(ConfigError, match="pool_size"):
        PostgresStore("postgresql://u@h/db", pool_size=1)


def test_postgres_url_is_redacted() -> None:
    store = PostgresStore("postgresql://bob:s3cret@db.example:5433/prod")
    assert store.url == "postgresql://bob@db.example:5433/prod"
    assert "s3cret" not in repr(store.url)


async def test_unopened_store_says_so(tmp_path: pathlib.Path) -> None:
    store = SQLiteStore(tmp_path / "a.db")
    with pytest.raises(StoreError, match="not open"):
        await store.get_task("x")


async def test_newer_schema_is_refused(tmp_path: pathlib.Path) -> None:
    import sqlite3

    store = await open_store(f"sqlite:///{tmp_path}/a.db")
    await store.close()
    conn = sqlite3.connect(tmp_path / "a.db")
    conn.execute("UPDATE stalwart_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, newer"):
        await open_store(f"sqlite:///{tmp_path}/a.db")
