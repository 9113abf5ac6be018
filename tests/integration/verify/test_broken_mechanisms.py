"""Each verify item fails when the mechanism it checks is switched off or broken."""

from __future__ import annotations

import os

import pytest

from stalwart.verify import run_verify

pytestmark = pytest.mark.timeout(240)


async def _item(app: str, item: str, tmp_path) -> dict:
    report = await run_verify(app, tmp_path, only=[item])
    [result] = report["items"]
    return result


async def test_no_breaker_fails_eh2(tmp_path):
    item = await _item("tests.integration.verify.apps:no_breaker", "EH-2", tmp_path)
    assert item["status"] == "failed" and "breaker" in item["remediation"]
    assert item["evidence"]["breaker"] is None and item["evidence"]["opened"] is False
    assert all(n > 0 for n in item["evidence"]["requests_reaching_the_primary_per_task"])


async def test_no_retry_fails_eh1(tmp_path):
    item = await _item("tests.integration.verify.apps:no_retry", "EH-1", tmp_path)
    assert item["status"] == "failed" and "retry" in item["remediation"]


async def test_journal_off_fails_sm1_and_sm2(tmp_path, monkeypatch):
    monkeypatch.setenv("STALWART_TEST_BREAK", f"journal:{os.getpid()}")
    report = await run_verify(
        "tests.integration.verify.broken:app", tmp_path, only=["SM-1", "SM-2"]
    )
    items = {i["id"]: i for i in report["items"]}
    assert items["SM-1"]["status"] == "failed" and items["SM-1"]["evidence"]["records"] == 0
    assert items["SM-2"]["status"] == "failed"
    assert items["SM-2"]["evidence"]["tasks_without_journal"] > 0


async def test_redactor_off_fails_se3(tmp_path, monkeypatch):
    """On the warehouse example, whose answer names the SKU it was asked for: SE-3's
    canaries, in the workload's own requests, come back in the output unredacted."""
    monkeypatch.setenv("STALWART_TEST_BREAK", f"redactor:{os.getpid()}")
    monkeypatch.setenv("WAREHOUSE_DB", str(tmp_path / "warehouse.db"))
    item = await _item("tests.integration.verify.broken:warehouse", "SE-3", tmp_path / "out")
    assert item["status"] == "failed", item
    assert "task outputs" in item["evidence"]["canary_hits"]
    assert item["evidence"]["seeded_in"].endswith("field 'sku'")


async def test_eh1_expects_the_waits_an_unjittered_policy_really_waits(tmp_path):
    """A provider retrying without jitter waits exactly each backoff bound: EH-1 reports
    the policy's jitter as it is (it said "full" of every model policy) and expects
    each gap at least its bound, not anywhere from 0."""
    item = await _item("tests.integration.verify.apps:unjittered", "EH-1", tmp_path)
    assert item["status"] == "complete", (item["evidence"], item["remediation"])
    policy = item["evidence"]["policy"]
    assert policy["jitter"] == "none" and policy["max_attempts"] == 3
    storm = item["evidence"]["503"]
    assert storm["expected_waits_s"] == [[0.2, 0.2], [0.4, 0.4]]
    assert storm["backoff_bounds_s"] == [0.2, 0.4]
    assert all(
        g >= b - 0.01 for g, b in zip(storm["gaps_s"], storm["backoff_bounds_s"], strict=True)
    )
