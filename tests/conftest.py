"""Suite-wide: tests marked ``bench`` are long runs that belong in ``make bench``.

``make test`` must stay well under 15 minutes on the 2-core machine; a test whose
evidence needs minutes of load, chaos or soak is marked ``@pytest.mark.bench`` and
runs when ``STALWART_SLOW=1`` (``make bench`` sets it).
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("STALWART_SLOW"):
        return
    skip = pytest.mark.skip(reason="a long run: set STALWART_SLOW=1 (make bench)")
    for item in items:
        if item.get_closest_marker("bench") is not None:
            item.add_marker(skip)
