"""LC-1, LC-2 and LC-3 with short runs on nodes of their own beside the verify node;
a leaking app fails LC-3."""

from __future__ import annotations

import pathlib

import pytest

from stalwart.verify import run_verify
from stalwart.verify._checks_load import LoadSettings, parse_duration

pytestmark = pytest.mark.timeout(300)


def items(report) -> dict[str, dict]:
    return {i["id"]: i for i in report["items"]}


def _mounts() -> set[str]:
    lines = pathlib.Path("/proc/mounts").read_text().splitlines()
    return {line.split()[1] for line in lines if line.startswith("stalwart-chaos ")}


@pytest.mark.bench  # about a minute of load, chaos and soak; the chaos suite covers each
async def test_short_load_chaos_and_soak_runs_hold_and_say_they_are_short(tmp_path, monkeypatch):
    monkeypatch.setenv("STALWART_VERIFY_LOAD_S", "2s")
    monkeypatch.setenv("STALWART_VERIFY_CHAOS_S", "15s")
    monkeypatch.setenv("STALWART_VERIFY_SOAK_S", "12")
    before = _mounts()
    report = await run_verify("examples.helpdesk.app:app", tmp_path, only=["LC-1", "LC-2", "LC-3"])
    lc1, lc2, lc3 = (items(report)[i] for i in ("LC-1", "LC-2", "LC-3"))

    assert lc1["status"] == "complete", lc1
    # the helpdesk's profile declares its p99 objective (10 s): applied, and named
    assert lc1["evidence"]["settings"]["p99_bound"] == "configured"
    assert lc1["evidence"]["settings"]["p99_bound_s"] == 10.0
    levels = lc1["evidence"]["levels"]
    assert [lv["level"] for lv in levels] == ["1x", "2x", "3x"]
    assert all(lv["holds"] and lv["lost"] == 0 for lv in levels)
    chart = lc1["evidence"]["chart"]
    assert chart["kind"] == "bars" and chart["x"] == ["1x", "2x", "3x"]
    assert set(chart["series"]) == {"p50", "p95", "p99"}
    assert all(len(v) == 3 and all(x > 0 for x in v) for v in chart["series"].values())

    # held, but 15 s of chaos is not the production length: partial, results shown
    assert lc2["status"] == "partial", lc2
    assert "production length" in lc2["remediation"]
    ev = lc2["evidence"]
    assert ev["meets_production_length"] is False
    assert ev["lost"] == 0 and ev["duplicate_side_effects"] == 0
    assert ev["results_match_fault_free"] is True and ev["not_injected"] == []
    assert ev["faults_left_in_force"] == [] and ev["corruption_undetected"] == 0

    # no growth in 12 s, but the checklist asks a 24 h soak: partial, results shown
    assert lc3["status"] == "partial", lc3
    assert "24 h" in lc3["remediation"]
    ev = lc3["evidence"]
    assert ev["flagged"] == [] and ev["meets_production_length"] is False
    assert "24 h" in ev["length"]
    assert ev["trend_alert"]["soak_rule_fires_on_a_growing_series"]
    assert ev["trend_alert"]["node_rule"]["rule"] == "MemoryGrowth"
    rss = ev["chart"]
    assert rss["kind"] == "lines" and rss["unit"] == "MB" and "node" in rss["series"]
    assert len(rss["x"]) == len(rss["series"]["node"]) >= 8

    # the runs lived under the verify work dir and left nothing behind there
    assert not list((tmp_path / "work" / "lc-2").glob("stalwart-chaos-*"))
    assert _mounts() == before


@pytest.mark.slow
async def test_a_leaking_app_fails_the_soak(tmp_path, monkeypatch):
    monkeypatch.setenv("STALWART_VERIFY_SOAK_S", "12")
    report = await run_verify(
        "tests.integration.verify.security_apps:leaky", tmp_path, only=["LC-3"]
    )
    lc3 = items(report)["LC-3"]
    assert lc3["status"] == "failed", lc3
    assert "triage.rss_mb" in lc3["evidence"]["flagged"]
    assert any(a["name"] == "SoakGrowth" for a in lc3["evidence"]["alerts"])
    assert "growth in" in lc3["remediation"]


@pytest.mark.slow
async def test_a_thread_per_task_that_never_exits_fails_the_soak(tmp_path, monkeypatch):
    # threads are judged by the plateau test (a pool that fills up and levels off passes);
    # a thread per ticket still climbs in the soak's later half, so it is flagged. 20 s,
    # not 12: in one run of the whole suite with both cores busy (2026-12-07) the 12 s
    # soak's later half saw too little of the triage agent's work to flag it ("partial");
    # idle, 12 s gave a later-half growth of 19.6 threads against 2 allowed
    monkeypatch.setenv("STALWART_VERIFY_SOAK_S", "20")
    report = await run_verify(
        "tests.integration.verify.security_apps:thread_leaky", tmp_path, only=["LC-3"]
    )
    lc3 = items(report)["LC-3"]
    evidence = lc3["evidence"]
    why = (lc3["status"], evidence.get("flagged"), evidence.get("samples"),
           evidence.get("trends", {}).get("triage.threads"))  # fmt: skip
    assert lc3["status"] == "failed", why
    assert "triage.threads" in lc3["evidence"]["flagged"]
    threads = lc3["evidence"]["trends"]["triage.threads"]
    assert threads["growing"] and not threads["settled"]
    assert threads["later_half"]["ci"][0] > 0  # still climbing at the end
    assert threads["later_half"]["growth"] > threads["later_half"]["allowed"]
    assert "growth in" in lc3["remediation"]


def test_settings_come_from_the_environment() -> None:
    s = LoadSettings.from_env({"STALWART_VERIFY_SOAK_S": "24h", "STALWART_VERIFY_LOAD_S": "1m"})
    assert s.soak_s == 86400 and s.load_s == 60 and s.chaos_s == LoadSettings().chaos_s
    assert parse_duration("1h30m", "X") == 5400
    from stalwart.errors import ConfigError

    with pytest.raises(ConfigError, match="STALWART_VERIFY_SOAK_S='soon' is not a duration"):
        LoadSettings.from_env({"STALWART_VERIFY_SOAK_S": "soon"})


@pytest.mark.slow
async def test_lc2_faults_a_proxied_tool_s_upstream(tmp_path, monkeypatch, supplier):
    """The warehouse with its supplier tool in proxy mode (tests/integration/verify/
    proxied.py): LC-2's proxy faults land on the supplier's upstream through verify's
    fault proxy (the app has no model, so there is no sim proxy), and the run holds."""
    monkeypatch.setenv("STALWART_VERIFY_CHAOS_S", "12s")
    report = await run_verify(
        "tests.integration.verify.proxied:proxied", tmp_path / "out", only=["LC-2"]
    )
    lc2 = items(report)["LC-2"]
    ev = lc2["evidence"]
    assert lc2["status"] == "partial", lc2  # held, but 12 s is not the production length
    # (duplicates are counted at the sim's services only: None on an app without the sim)
    assert ev["lost"] == 0 and ev["results_match_fault_free"] is True
    assert ev["faults_left_in_force"] == []
    on_tools = ev["faults_on_tool_upstreams"]
    assert on_tools and {f["target"] for f in on_tools} == {"tool:order_from_supplier"}
    assert any(f["status"] == "applied" for f in on_tools)
    assert "dependency blocks" not in ev["not_injected"]  # the proxy faults count as blocks
    assert ev["settings"]["tool_proxies"]["order_from_supplier"]["upstream"] == supplier.url
    assert supplier.received > 0  # the chaos node's calls reached the real supplier
    # the plan preflight counted before the run is the plan the run injected
    planned = ev["planned_restarts"]
    restarting = ("agent_kill", "journal_corrupt", "file_corrupt")
    ran = sum(sum(ev["faults_by_kind"].get(k, {}).values()) for k in restarting)
    ran -= sum(ev["faults_by_kind"].get(k, {}).get("detected", 0) for k in restarting)
    assert planned["restarting_faults"] == ran > 0
    assert planned["app_intensity"] == 5 and planned["window_s"] == 60.0
