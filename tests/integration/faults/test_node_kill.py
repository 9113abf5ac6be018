"""The node process SIGKILLed mid-load and started again on its store: every task the
client handed over finishes once, none is lost or delivered twice (one short round;
longer runs: ``bench/faults.py --only node_kill``)."""

from __future__ import annotations

import signal

import pytest
from tests.integration.faults.node_kill import node_kill_round

pytestmark = pytest.mark.timeout(240)


async def test_a_killed_node_restarted_on_its_store_loses_and_repeats_nothing(tmp_path):
    got = await node_kill_round(tmp_path, before_s=2.0, after_s=1.0, rate=20.0)
    assert got["killed_exit_code"] == -signal.SIGKILL
    assert got["accepted_before_kill"] > 0
    assert got["lost"] == 0 and got["duplicated"] == 0, got
    assert got["completed"] + got["failed"] + got["quarantined"] == got["accepted"], got
    assert got["failed"] == 0 and got["quarantined"] == 0, got
    assert got["node_exit_code"] == 0, got
    assert got["recovery_s"] < 30, got
