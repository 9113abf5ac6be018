from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests._postgres import require_postgres

from stalwart.testing import postgres_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (skipped without a server, except on CI)."""
    require_postgres()
    with postgres_database("stalwart_guard") as url:
        yield url
