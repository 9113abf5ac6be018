"""The storage contract kit (:mod:`stalwart.testing`), run against every backend.

``make_store`` and ``clock`` come from ``conftest.py``, parametrized over SQLite,
PostgreSQL and the in-memory store.
"""

from __future__ import annotations

from stalwart.testing import StoreContract


class TestStoreContract(StoreContract):
    """Every test of the kit, on every backend of ``conftest.BACKENDS``."""
