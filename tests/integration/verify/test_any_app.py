"""`stalwart verify` on apps other than the helpdesk: the two other examples, apps built to
lack a mechanism, preflight, --plan, and verify's own errors.

Short profiles: a few items each (the full runs are in bench/verify.py).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest
from tests.integration.verify.exercised import internal_errors, unexercised_complete
from tests.integration.verify.proxied import SUPPLIER_OPEN_S, SUPPLIER_TIMEOUT_S

from stalwart.verify import PreflightFailed, run_verify
from stalwart.verify._registry import CHECKS

from .conftest import REPO, verify_cli

pytestmark = pytest.mark.timeout(300)


def _items(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in report["items"]}


def _why(items: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the items that are not complete say (shown when an assertion fails)."""
    return {
        k: (v["measured"], v["evidence"].get("why"), v["evidence"].get("traceback", "")[-1500:])
        for k, v in items.items()
        if v["status"] != "complete"
    }


def test_preflight_names_every_missing_piece_and_exits_2(tmp_path):
    started = time.monotonic()
    done = verify_cli(
        "tests.integration.verify.broken:bare", "--out", str(tmp_path), "--only",
        "PA-2,SM-4,LC-1,MA-1",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert "5 precondition(s)" in done.stderr
    for piece in (
        "declares no workload",
        "writer call a model with no spend limit",
        "restart intensity 2 in 60 s",
        "no manifest is given",
        "side-effect tool 'wire_money' has no double",
    ):
        assert piece in done.stderr
    assert done.stderr.count("fix: ") == 5  # a fix for each
    assert elapsed < 30
    assert not (tmp_path / "work").exists()  # no node was started


def test_plan_shows_the_doubles_the_criteria_and_the_duration():
    done = verify_cli("examples.warehouse.app:app", "--plan", "--only", "SM-2,SM-4,GD-1,GD-2")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "tool reserve_stock: double" in out and "tool order_from_supplier: double" in out
    assert "tool check_stock: none" in out
    assert "4 SIGKILLs" in out and "complete when: at least 1 task killed mid-step" in out
    assert "expected not-run: the app calls no model" in out  # GD-1, on an app without models
    assert "expected duration: about 170 s" in out
    assert "PA-1" not in out  # only what was asked


def test_lc2s_plan_fits_the_restart_intensity_so_plan_has_no_warning():
    """LC-2's seeded chaos plan is known before the run and kept within the app's restart
    intensity (the warehouse keeps the default 5 in 60 s): --plan neither warns nor
    expects a give-up, on it as on the expenses app (10 in 60 s)."""
    for app in (
        "examples.warehouse.app:app",
        str(REPO / "examples" / "expenses" / "expenses.toml"),
    ):
        done = verify_cli(app, "--plan", "--only", "LC-2")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "warning:" not in done.stdout and "gives up" not in done.stdout, done.stdout


async def test_warehouse_example_short_profile(tmp_path, supplier):
    """The plain-Python example: its doubles stand in, its real targets see nothing,
    and the kills of PA-2 and SM-2 (9, over the default intensity of 5) never reach
    another item."""
    events: list[tuple[str, dict[str, Any]]] = []
    report = await run_verify(
        "examples.warehouse.app:app",
        tmp_path / "out",
        only=["PA-2", "EH-1", "SM-2", "SM-4", "GD-2", "SE-3"],
        progress=lambda e, f: events.append((e, f)),
    )
    items = _items(report)
    assert {k: v["status"] for k, v in items.items()} == {
        "PA-2": "complete",
        "EH-1": "complete",  # no model: the doubles' attempts, reset at their switch
        "SM-2": "complete",
        "SM-4": "complete",
        "GD-2": "complete",
        "SE-3": "complete",
    }, _why(items)
    # SE-3's canaries rode in the workload's own requests (their SKU), and came back
    # redacted in the answers that name it
    se3 = items["SE-3"]["evidence"]
    assert se3["seeded_in"].endswith("field 'sku'") and se3["canary_hits"] == {}
    assert se3["redacted_in_output"]
    # nothing complete without exercise; nothing verify's own error (a cascade from
    # another item's kills shows as one: a dead node, a store not open)
    assert unexercised_complete(items) == {}
    assert internal_errors(items) == {}
    # EH-1 retried each double's reset attempts within its backoff bounds (no model)
    eh1 = items["EH-1"]["evidence"]
    assert eh1["model_status"] == "not-run" and "no model chain" in eh1["why"]
    for name in ("order_from_supplier", "reserve_stock"):
        retried = eh1["tools"][name]
        assert "at its double" in retried["fault"], retried
        assert retried["attempts_of_first_call"] == retried["policy"]["max_attempts"] == 3
        waits = zip(retried["gaps_s"], retried["backoff_bounds_s"], strict=True)
        slack = 0.25 + retried["scheduling_lag_s"]  # verify's slack and measured delay
        assert all(0 <= g <= b + slack for g, b in waits)
    assert items["SM-2"]["evidence"]["resumed"] >= 1 and items["SM-2"]["evidence"]["results_equal"]
    effects = items["SM-4"]["evidence"]["per_tool"]
    assert sum(t["keys_delivered"] for t in effects.values()) > 0
    assert all(t["duplicates"] == 0 for t in effects.values())
    assert all(t["exercised"] for t in items["GD-2"]["evidence"]["per_tool"].values())
    # SM-2's four kills after PA-2's five would exceed the intensity: SM-2 runs on a fresh
    # node (the one EH-1's tool part starts for closed breakers, or one of its own)
    sm2 = items["SM-2"]["evidence"]
    why = sm2.get("fresh_node_because")
    assert why is None or "exceed the app's restart intensity 5" in why
    assert report["meta"]["node_restarts"] >= 1
    # safe by default: the supplier got no request, the database no reservation
    assert supplier.received == 0
    with sqlite3.connect(tmp_path / "warehouse.db") as conn:
        assert conn.execute("SELECT count(*) FROM reservations").fetchone()[0] == 0
    # every item's criterion and measured value are in the report; progress was live
    assert all(i["criterion"] and i["measured"] for i in items.values())
    names = [e for e, _ in events]
    assert names.count("verify_item_started") == 6 and names.count("verify_item_done") == 6
    assert "verify_item_progress" in names and "verify_node_restarted" in names


@pytest.mark.slow
@pytest.mark.timeout(600)  # the supplier's proxy and reserve_stock's double, each
async def test_warehouse_supplier_faulted_through_a_fault_proxy(tmp_path, supplier):
    """The warehouse's HTTP tool in proxy mode (tests/integration/verify/proxied.py: only
    the profile differs): verify puts a fault proxy in front of the real supplier and
    points $SUPPLIER_URL at it. EH-1 resets its connections and counts the attempts and
    their spacing, EH-3 black-holes it there (each call ends by the tool's
    timeout), EH-2 resets its connections until the tool's breaker opens, then restores
    them, GD-2 resets them, SM-4 slows them while killing agents."""
    report = await run_verify(
        "tests.integration.verify.proxied:proxied",
        tmp_path / "out",
        only=["EH-1", "EH-2", "EH-3", "SM-4", "GD-2"],
    )
    items = _items(report)
    assert {k: v["status"] for k, v in items.items()} == {
        "EH-1": "complete",  # no model: the proxied tool's retries are what it exercised
        "EH-2": "complete",  # and its breaker
        "EH-3": "complete",  # and the proxied tool's hang
        "SM-4": "complete",
        "GD-2": "complete",
    }, _why(items)
    retried = items["EH-1"]["evidence"]["tools"]["order_from_supplier"]
    assert retried["attempts_of_first_call"] == retried["policy"]["max_attempts"] == 3
    assert len(retried["gaps_s"]) == len(retried["backoff_bounds_s"]) == 2
    waits = zip(retried["gaps_s"], retried["backoff_bounds_s"], strict=True)
    # within the tool's backoff bounds, plus the scheduling delay verify measured meanwhile
    slack = 0.25 + retried["scheduling_lag_s"]
    assert all(0 <= g <= b + slack for g, b in waits)
    breaker = items["EH-2"]["evidence"]["tools"]["order_from_supplier"]
    assert breaker["opened"] and breaker["connections_per_task_while_refused"][-1] == 0
    assert breaker["connections_per_task_while_refused"][0] > 0  # it did reach the proxy
    assert breaker["call_succeeded_after_recovery"] and breaker["reached_again_after_s"] > 0
    assert breaker["breaker"]["wait_in_open_s"] == SUPPLIER_OPEN_S  # the app's, not 30 s
    assert items["EH-2"]["evidence"]["model_status"] == "not-run"
    hang = items["EH-3"]["evidence"]["tool_hangs"]["order_from_supplier"]
    assert hang["exercised"] and hang["connections_held"] > 0 and hang["calls"] > 0
    assert hang["upstream"] == supplier.url and hang["upstream_from"] == "$SUPPLIER_URL"
    # each attempt ends at the app's timeout (not the example's 10 s, nor the default 15 s):
    # the call within 3 x 5 s + the waits between them
    assert (hang["timeout_s"], hang["attempts_at_most"]) == (SUPPLIER_TIMEOUT_S, 3)
    assert hang["longest_call_s"] <= hang["bound_s"] + 2 and hang["bound_s"] < 16
    assert set(hang["call_outcomes"]) <= {"unavailable", "error"}
    assert "order_from_supplier" in items["EH-3"]["measured"]
    down = items["GD-2"]["evidence"]["per_tool"]["order_from_supplier"]
    assert "reset at the fault proxy" in down["fault"] and down["connections_reset_while_down"] > 0
    assert items["GD-2"]["evidence"]["per_tool"]["check_stock"]["fault"].startswith("down")
    slowed = items["SM-4"]["evidence"]["through_fault_proxy"]["order_from_supplier"]
    assert slowed["latency_ms"] > 0 and slowed["connections"] > 0
    assert items["SM-4"]["evidence"]["per_tool"]["order_from_supplier"]["keys_delivered"] > 0
    # the tool's own function ran and reached the real supplier through the proxy; the
    # variable is given back; the tool with a double still ran it (no reservation)
    assert supplier.received > 0 and os.environ["SUPPLIER_URL"] == supplier.url
    with sqlite3.connect(tmp_path / "warehouse.db") as conn:
        assert conn.execute("SELECT count(*) FROM reservations").fetchone()[0] == 0


@pytest.mark.slow
async def test_a_proxied_tool_s_prolonged_degradation_is_alerted(tmp_path, supplier):
    """GD-3 on the warehouse (no model): the supplier's upstream reset at the proxy and
    held until the ProlongedDegradation alert for tool:order_from_supplier goes critical;
    restored, it resolves once the tool's breaker lets a call through."""
    report = await run_verify(
        "tests.integration.verify.proxied:proxied", tmp_path / "out", only=["GD-3"]
    )
    gd3 = _items(report)["GD-3"]
    assert gd3["status"] == "complete", _why({"GD-3": gd3})
    tool = gd3["evidence"]["tools"]["order_from_supplier"]
    assert tool["component"] == "tool:order_from_supplier"
    notices = [tuple(n) for n in tool["notifications"]]
    assert notices.index(("warning", "firing")) < notices.index(("critical", "firing"))
    assert ("critical", "resolved") in notices
    assert "degradation_ended" in tool["logged"] and tool["duration_metric"]
    assert tool["held_s"] >= 6  # past the shortened critical for-time
    assert gd3["evidence"]["model_status"] == "not-run"  # no model chain to hold


@pytest.mark.timeout(600)  # the supplier's proxy and reserve_stock's double, each
async def test_a_proxied_tool_without_retries_or_breaker_fails_eh1_and_eh2(tmp_path, supplier):
    report = await run_verify(
        "tests.integration.verify.proxied:careless_tool",
        tmp_path / "out",
        only=["EH-1", "EH-2"],
    )
    items = _items(report)
    assert {k: v["status"] for k, v in items.items()} == {"EH-1": "failed", "EH-2": "failed"}
    retried = items["EH-1"]["evidence"]["tools"]["order_from_supplier"]
    assert retried["policy"] is None and retried["attempts_of_first_call"] == 1
    assert retried["tried_once_by_design"] is False  # its target dedupes: it could retry
    assert "order_from_supplier is not retried" in items["EH-1"]["remediation"]
    eh2 = items["EH-2"]
    tool = eh2["evidence"]["tools"]["order_from_supplier"]
    assert tool["breaker"] is None and not tool["opened"]
    assert all(n > 0 for n in tool["connections_per_task_while_refused"])  # never stopped
    assert "order_from_supplier kept calling its dead upstream" in eh2["remediation"]


async def test_the_same_item_is_not_run_when_the_tool_cannot_be_faulted(tmp_path, supplier):
    """The same app with its side-effect tools declared "none": EH-3 has no dependency to hang
    (no model, no proxied tool) and says so; the supplier sees nothing."""
    report = await run_verify(
        "tests.integration.verify.proxied:unfaultable", tmp_path / "out", only=["EH-1", "EH-3"]
    )
    eh3 = _items(report)["EH-3"]
    assert eh3["status"] == "not-run", eh3
    assert "no tool has a double or a fault proxy" in eh3["evidence"]["why"]
    assert "proxy:<VAR>=<url>" in eh3["remediation"]
    assert "order_from_supplier" in eh3["evidence"]["tools_not_hung"]
    # EH-1 says why no tool gave it anything to fault, each tool's mode, and the fix
    eh1 = _items(report)["EH-1"]
    assert eh1["status"] == "not-run", eh1
    why = eh1["evidence"]["why"]
    assert "no model chain" in why and "no tool has a double or a fault proxy" in why
    assert "reserve_stock: declared 'none'" in why and "check_stock: declared 'none'" in why
    assert "@tool(double=fn)" in eh1["remediation"] and "proxy:<VAR>=<url>" in eh1["remediation"]
    assert supplier.received == 0


async def test_preflight_refuses_a_proxy_upstream_off_this_machine_or_not_listening(
    tmp_path, monkeypatch
):
    with pytest.raises(PreflightFailed) as remote:
        await run_verify("tests.integration.verify.proxied:remote", tmp_path / "a", only=["EH-3"])
    text = str(remote.value)
    assert "tool 'order_from_supplier'" in text and "only forwards to loopback" in text
    assert "supplier.example.com" in text and "give order_from_supplier a double" in text
    monkeypatch.setenv("SUPPLIER_URL", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(PreflightFailed) as closed:
        await run_verify("tests.integration.verify.proxied:proxied", tmp_path / "b", only=["EH-3"])
    assert "nothing accepts connections at its proxy upstream" in str(closed.value)
    monkeypatch.delenv("SUPPLIER_URL")
    with pytest.raises(PreflightFailed) as unset:
        await run_verify("tests.integration.verify.proxied:proxied", tmp_path / "c", only=["EH-3"])
    assert "SUPPLIER_URL is not set" in str(unset.value)
    assert not (tmp_path / "a" / "work").exists()  # no node was started


def test_plan_shows_the_proxy_and_what_reaches_the_real_target(supplier):
    url = supplier.url
    done = subprocess.run(
        [sys.executable, "-m", "stalwart.cli", "verify",
         "tests.integration.verify.proxied:proxied", "--plan",
         "--only", "EH-1,EH-2,EH-3,GD-2,SM-4"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), "SUPPLIER_URL": url},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert (
        "tool order_from_supplier: proxy:SUPPLIER_URL (real side effects: reaches its real "
        f"target {url} through the proxy)" in out
    )
    assert (
        f"proxy: a fault proxy on a free loopback port in front of {url} (from "
        "$SUPPLIER_URL); $SUPPLIER_URL points the tool at it" in out
    )
    # EH-1 … EH-3 fault the proxied tool at its proxy and the other's double at its switch
    assert "black hole at the fault proxy of order_from_supplier" in out  # EH-3 runs
    assert "expected black hole at the double of reserve_stock" in out
    assert "expected resets at the fault proxy" in out  # GD-2: doubles are taken down
    assert "resets until the breaker opens at the fault proxy" in out
    assert "resets (attempts and waits counted) at the fault proxy" in out
    assert "not-run" not in out  # EH-1 … EH-3 run on this app without a model


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_expenses_toml_example_short_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPENSES_PAYOUTS", str(tmp_path / "payouts.csv"))
    monkeypatch.setenv("EXPENSES_OUTBOX", str(tmp_path / "outbox.txt"))
    report = await run_verify(
        str(REPO / "examples" / "expenses" / "expenses.toml"),
        tmp_path / "out",
        only=["SM-4", "GD-1", "SE-3"],
    )
    items = _items(report)
    assert {k: v["status"] for k, v in items.items()} == {
        "SM-4": "complete",
        "GD-1": "complete",
        "SE-3": "complete",
    }, _why(items)
    # SE-3's canaries rode in the app's own workload inputs (no fixed text input), and
    # none came out anywhere
    se3 = items["SE-3"]["evidence"]
    assert se3["seeded_in"].startswith("2 workload input(s)"), se3
    assert se3["canary_hits"] == {} and se3["redacted_in_output"]
    assert unexercised_complete(items) == {}
    assert internal_errors(items) == {}
    assert items["GD-1"]["evidence"]["with_primary_down"]["requests_served_by_the_fallback"] > 0
    effects = items["SM-4"]["evidence"]["per_tool"]
    assert effects["approve_payout"]["keys_delivered"] > 0
    assert effects["notify_employee"]["keys_delivered"] > 0
    # the doubles ran: neither real target was written
    assert not (tmp_path / "payouts.csv").exists() and not (tmp_path / "outbox.txt").exists()


async def test_an_app_lacking_the_mechanisms_fails_gd2_and_sm4(tmp_path, monkeypatch):
    """An agent that dies when a tool is down, and delivers its side effect outside the
    journal (a resumed task delivers it again with the same key)."""
    monkeypatch.setenv("STALWART_TEST_CARELESS_MARK", str(tmp_path / "crashed"))
    report = await run_verify(
        "tests.integration.verify.broken:careless_app", tmp_path / "out", only=["GD-2", "SM-4"]
    )
    items = _items(report)
    assert items["GD-2"]["status"] == "failed", items["GD-2"]["evidence"]
    assert items["GD-2"]["evidence"]["agents_restarted"]
    assert items["SM-4"]["status"] == "failed", items["SM-4"]["evidence"]
    assert items["SM-4"]["evidence"]["per_tool"]["send_notice"]["duplicates"] > 0


async def test_an_app_verify_cannot_exercise_is_not_run_not_complete(tmp_path):
    """Its workload never reaches its tools, and its side-effect tool cannot be faulted."""
    report = await run_verify(
        "tests.integration.verify.broken:unreachable", tmp_path / "out", only=["GD-2", "SM-4"]
    )
    items = _items(report)
    assert items["GD-2"]["status"] == "not-run"
    assert "no workload task called any tool" in items["GD-2"]["evidence"]["why"]
    assert items["SM-4"]["status"] == "not-run"
    assert items["SM-4"]["evidence"]["per_tool"]["ship_parcel"]["real_target_blocked"]
    assert "ship_parcel" in items["SM-4"]["remediation"]
    assert report["summary"]["not_run"].keys() == {"GD-2", "SM-4"}


async def test_verify_s_own_error_is_not_run_with_its_traceback(tmp_path, monkeypatch):
    async def broken_check(t: Any) -> Any:
        raise ValueError("not enough values to unpack (expected 2, got 1)")

    monkeypatch.setitem(CHECKS, "SM-1", broken_check)
    report = await run_verify("examples.warehouse.app:app", tmp_path / "out", only=["SM-1"])
    [item] = report["items"]
    assert item["status"] == "not-run"
    assert "stalwart verify itself failed" in item["evidence"]["why"]
    assert "ValueError: not enough values" in item["evidence"]["traceback"]
    assert "no verdict on your app" in item["remediation"]


async def test_preflight_raises_before_any_node(tmp_path):
    with pytest.raises(PreflightFailed) as caught:
        await run_verify("tests.integration.verify.broken:bare", tmp_path, only=["SM-4"])
    whats = [p.what for p in caught.value.problems]
    assert any("no workload" in w for w in whats) and any("wire_money" in w for w in whats)
    assert not (tmp_path / "work").exists()


def test_sigterm_stops_verify_and_the_report_says_what_was_not_run(tmp_path):
    """The node under test stops on SIGTERM; verify must stop too, not restart it."""
    import json
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "stalwart.cli", "verify", "examples.warehouse.app:app",
         "--only", "SM-2,SM-4,GD-2", "--out", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "WAREHOUSE_DB": str(tmp_path / "w.db")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # progress lines: wait until the first item runs
            if "[1/3] SM-2" in line:
                break
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    report = json.loads((tmp_path / "readiness.json").read_text())
    assert report["meta"]["interrupted"] is True
    statuses = {i["id"]: i["status"] for i in report["items"]}
    assert statuses == {"SM-2": "not-run", "SM-4": "not-run", "GD-2": "not-run"}
    assert all("stopped (SIGTERM or SIGINT)" in i["evidence"]["why"] for i in report["items"])
