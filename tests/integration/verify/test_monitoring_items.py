"""MA-3 and MA-4 against a live helpdesk node, and each with its mechanism switched off.

MA-3 makes every alert rule fire for real (warning, then critical), delivered to the
verify receiver, and resolve; MA-4 loads the dashboard in headless Chromium during load
and a SIGKILL. Without a channel that receives, MA-3 fails; with a dashboard that stops
updating, or no browser, MA-4 fails.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from stalwart.observe import default_rules
from stalwart.verify import run_verify
from stalwart.verify._receiver import Receiver

HELPDESK = "examples.helpdesk.app:app"


@pytest.fixture(autouse=True)
def _fresh_node_gauges() -> None:
    """A node's gauges live in this process's registry: breakers, degradations and budget
    ratios other tests' nodes left set would read as this node's, already firing."""
    from stalwart.observe import catalog
    from stalwart.resilience._metrics import BREAKER_STATE

    for gauge in (BREAKER_STATE, catalog.DEGRADED, catalog.BUDGET_USED_RATIO):
        gauge.clear()


needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("STALWART_CHROMIUM"),
    reason="needs a Chromium (Debian: apt-get install chromium)",
)


@needs_chromium
@pytest.mark.timeout(300)
async def test_every_alert_rule_fires_and_the_dashboard_is_live(tmp_path):
    report = await run_verify(HELPDESK, tmp_path, only=["MA-3", "MA-4"])
    items = {i["id"]: i for i in report["items"]}
    ma3, ma4 = items["MA-3"], items["MA-4"]
    assert ma3["status"] == "complete", json.dumps(ma3["evidence"]["problems"], indent=1)
    rules = ma3["evidence"]["rules"]
    assert set(rules) == {r.name for r in default_rules()}
    for name, rule in rules.items():
        fired = rule["fired_after_s"]
        assert fired["warning"] is not None and fired["critical"] is not None, name
        assert fired["warning"] <= fired["critical"], name
        assert set(rule["resolved_after_removal_s"]) == {"warning", "critical"}, name
        assert all(n["delivered_after_s"] is not None for n in rule["notices"]), name
        payload = rule["payload"]
        assert payload["alertname"] == name and payload["severity"] == "critical"
        assert payload["threshold"] == rule["thresholds"]["critical"]["value"]
    # the graded drivers held a warning-level condition first: no critical during it
    for name in ("RestartStorm", "MemoryGrowth", "BudgetLimit"):
        assert rules[name]["warning_level_held_s"] > 0
    # the shortened `for` times and windows are in the report, beside the defaults
    assert rules["ReadinessFailing"]["thresholds"]["critical"]["for_s"] == 3
    assert rules["ReadinessFailing"]["thresholds"]["defaults"]["critical"]["for_s"] == 120

    assert ma4["status"] == "complete", ma4["evidence"]["problems"]
    evidence = ma4["evidence"]
    assert evidence["panels_visible"] == {"business": True, "system": True, "infrastructure": True}
    assert evidence["live_feed"] == "connected"
    assert evidence["kill_shown_ms"] is not None and evidence["first_paint_ms"] is not None
    shot = tmp_path / evidence["screenshot"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    html = (tmp_path / "readiness.html").read_text()
    assert "data:image/png;base64," in html  # the screenshot, embedded
    assert html.count("<svg class='chart'") == 2  # MA-3's and MA-4's timing charts
    assert "![MA-4 screenshot](ma4-dashboard.png)" in (tmp_path / "readiness.md").read_text()


RULES_OFF = "\n".join(
    f'[[rule]]\nname = "{r.name}"\ndisabled = true'
    for r in default_rules()
    if r.name != "RestartStorm"
)


@pytest.mark.timeout(120)
async def test_ma3_fails_when_alerts_do_not_reach_the_channel(tmp_path, monkeypatch):
    # every rule but RestartStorm removed, and the webhook pointing where nothing listens
    monkeypatch.setattr(
        "stalwart.verify._target.VERIFY_RULES",
        RULES_OFF + '\n[[rule]]\nname = "RestartStorm"\nwindow_s = 4\n',
    )
    monkeypatch.setattr(Receiver, "url", property(lambda self: "http://127.0.0.1:9/hook"))
    report = await run_verify(HELPDESK, tmp_path, only=["MA-3"])
    [item] = report["items"]
    assert item["status"] == "failed"
    evidence = item["evidence"]
    storm = evidence["rules"]["RestartStorm"]
    # the evaluator fired it, at both severities, and it resolved: only delivery failed
    assert storm["fired_after_s"]["warning"] is not None
    assert storm["fired_after_s"]["critical"] is not None
    assert storm["notices"] and all(n["delivered_after_s"] is None for n in storm["notices"])
    problems = evidence["problems"]
    assert any("RestartStorm" in p and "never reached the channel" in p for p in problems)
    # the removed rules: their conditions have no alert
    assert any(p.startswith("no alert rule watches model error rate") for p in problems)
    assert "prolonged degradation" in evidence["no_rule_for"]
    assert "channel" in item["remediation"]


@needs_chromium
@pytest.mark.timeout(120)
async def test_ma4_fails_when_the_dashboard_stops_updating(tmp_path, monkeypatch):
    from stalwart.server import _views

    build = _views.Summary.build
    frozen: dict[int, dict] = {}

    async def first_summary_forever(self):  # the numbers of the first moment, ever after
        if id(self) not in frozen:
            frozen[id(self)] = await build(self)
        return frozen[id(self)]

    monkeypatch.setattr(_views.Summary, "build", first_summary_forever)
    report = await run_verify(HELPDESK, tmp_path, only=["MA-4"])
    [item] = report["items"]
    assert item["status"] == "failed"
    problems = item["evidence"]["problems"]
    assert any("did not show on the dashboard" in p for p in problems), item["evidence"]
    assert item["evidence"]["kill_shown_ms"] is None
    assert "killed agent within 2 s" in item["remediation"]


@pytest.mark.timeout(60)
async def test_ma4_without_a_browser_is_not_run_saying_what_to_install(tmp_path, monkeypatch):
    """Nothing was exercised, so not-run (never complete, not the app's failure)."""
    monkeypatch.setenv("STALWART_CHROMIUM", str(tmp_path / "no-such-chromium"))
    report = await run_verify(HELPDESK, tmp_path, only=["MA-4"])
    [item] = report["items"]
    assert item["status"] == "not-run"
    assert item["evidence"]["why"] == "no Chromium executable found"
    assert "apt-get install chromium" in item["remediation"]
