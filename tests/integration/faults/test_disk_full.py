"""Disk full, then freed, against a real node whose SQLite store lives on a small tmpfs.

While the disk is full the node stays up, readiness says the store refuses writes,
new tasks are refused with a clear error, and tasks in flight wait (a write that
fails for want of space is retryable, never a corrupt store). Once space is freed,
with no manual step, every accepted task completes: lost 0, duplicated 0, and the
node exits 0. (bench/faults.py runs more rounds: ``disk_full`` in faults.json.)
"""

from __future__ import annotations

import pathlib

import pytest
from tests.integration.faults.disk_apps import CannotMount, disk_full_round, small_disk

pytestmark = pytest.mark.timeout(240)


async def test_a_full_disk_holds_tasks_and_freeing_it_completes_every_one(
    tmp_path: pathlib.Path,
) -> None:
    try:
        with small_disk(tmp_path / "disk") as disk:
            got = await disk_full_round(disk, tmp_path)
    except CannotMount as exc:
        pytest.skip(str(exc))
    assert got["node_exit_code"] == 0  # the node never gave up
    assert got["accepted"] >= 18  # 5 before, 8 in flight and 5 after, at least
    assert got["completed"] == got["accepted"], got["statuses"]
    assert got["lost"] == 0 and got["duplicated"] == 0 and got["quarantined"] == 0
    # readiness named the store while it refused writes; ready again within 5 s of freeing
    assert "store" in str(got["readiness_while_full"])
    assert got["ready_after_freeing_s"] < 5
    if got["rejected_while_full"]:  # a refused submission says why
        assert "full" in got["rejection"], got["rejection"]
