from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from stalwart.testing import postgres_database, postgres_reachable


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (skipped without a server, except on CI)."""
    if not postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable")
        pytest.skip("PostgreSQL is not reachable")
    with postgres_database("stalwart_guard") as url:
        yield url
