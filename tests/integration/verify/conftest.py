"""Fixtures of the verify tests: the warehouse example's HTTP supplier service, and
``stalwart verify`` run as a user runs it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.warehouse.supplier import Supplier, start


@dataclasses.dataclass(frozen=True)
class SupplierService:
    """The supplier running on loopback: its URL and its state (orders, requests seen)."""

    url: str
    state: Supplier

    @property
    def received(self) -> int:
        """Requests the supplier has received (every POST /orders)."""
        return self.state.received


@pytest.fixture
def supplier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SupplierService]:
    """The warehouse example's supplier (examples/warehouse/supplier.py) on a free loopback
    port, with ``SUPPLIER_URL`` pointing at it and ``WAREHOUSE_DB`` in ``tmp_path`` for the
    verify run; stopped and its socket closed after the test."""
    url, state, server = start()
    monkeypatch.setenv("SUPPLIER_URL", url)
    monkeypatch.setenv("WAREHOUSE_DB", str(tmp_path / "warehouse.db"))
    try:
        yield SupplierService(url, state)
    finally:
        server.shutdown()
        server.server_close()


REPO = Path(__file__).resolve().parents[3]


def verify_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m stalwart.cli verify ARGS`` from the repository root (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "verify", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
