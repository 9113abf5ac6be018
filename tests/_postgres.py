"""PostgreSQL for the tests that need the real server (127.0.0.1:5432 here; `.ci/run`
starts it in CI)."""

from __future__ import annotations

import os

import pytest

from stalwart.testing import PG_ADMIN, postgres_reachable

__all__ = ["require_postgres"]


def require_postgres() -> None:
    """Skip the calling test where no PostgreSQL server answers; fail it in CI, which
    starts one (a skip there would pass a suite that tested nothing of PostgreSQL)."""
    if not postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN}")
